"""Measure 3: 1,000 concurrent callers on a cold cache, token endpoint answering in 50 ms.

Each caller obtains the token through the client's own token path (what its request
awaits before sending; for the plugin ``corpauth.get_token()``, which is what
``Depends(corpauth.bearer_token)`` awaits), so the loop-stall monitor sees the fetch and
not the callers' own request handling. Figures: token requests made, p50/p99 wait of the
callers (from the moment they were all started), and the longest event-loop stall seen
by a task that sleeps 1 ms in a loop. Baselines from the same run: one caller alone on a
cold cache (what a single fetch costs), and the monitor on an idle loop (the stall noise
floor). With ``anchors`` it also runs Authlib and httpx-auth on the same devserver
process (measure 7), with the plugin's figures as their baseline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from .common import (
    DEV_HEADERS,
    Devserver,
    LoopStallMonitor,
    Profile,
    Report,
    idle_stall,
    ms,
    percentile,
    processes,
    ratio,
    start_devserver,
)
from .contenders import BankTransport, Contender, CorpAuthContender

LATENCY = 0.05
#: Callers started per loop iteration: 1,000 task starts in one iteration would stall the
#: loop by themselves; in batches they are all waiting within a few ms, long before 50 ms.
LAUNCH_BATCH = 100
STALL_TARGET = 0.010


@dataclass
class HerdResult:
    callers: int
    token_requests: int
    failures: int
    p50: float
    p99: float
    stall: float


async def herd(cls: type[Contender], dev: Devserver, callers: int) -> HerdResult:
    dev.reset()
    contender = cls(dev, BankTransport(mock=True), leeway=30)
    await contender.start()
    waits: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()

    async def caller(start: float) -> None:
        nonlocal failures
        try:
            await contender.token()
        except Exception:
            failures += 1
        waits.append(time.perf_counter() - start)

    try:
        async with LoopStallMonitor() as monitor:
            start = time.perf_counter()
            tasks = []
            for i in range(callers):
                tasks.append(loop.create_task(caller(start)))
                if i % LAUNCH_BATCH == LAUNCH_BATCH - 1:
                    await asyncio.sleep(0)  # let the loop breathe between batches
            await asyncio.gather(*tasks)
    finally:
        await contender.close()
    return HerdResult(
        callers=callers,
        token_requests=dev.stats()["token_requests"],
        failures=failures,
        p50=percentile(waits, 50),
        p99=percentile(waits, 99),
        stall=monitor.max_stall,
    )


async def warm_up(dev: Devserver) -> None:
    """httpx's first request in a process imports anyio's backend (a one-off stall of
    10-20 ms); pay it here so that it is charged to no contender."""
    async with httpx.AsyncClient() as client:
        await client.get(dev.base + "/_dev/stats", headers=DEV_HEADERS)


def stall_verdict(stall: float, idle: float) -> bool | str:
    """PASS under the target; MISS over it on a quiet machine; "inconclusive" over it
    when the idle loop alone stalls for half the target (the machine, not the code,
    may have made the difference)."""
    if stall < STALL_TARGET:
        return True
    return "inconclusive" if idle >= STALL_TARGET / 2 else False


def describe(name: str, r: HerdResult) -> None:
    print(
        f"  {name:10} callers {r.callers}: token requests {r.token_requests}, failed "
        f"{r.failures}, wait p50 {ms(r.p50)} p99 {ms(r.p99)}, longest loop stall {ms(r.stall)}"
    )


def run(
    profile: Profile,
    report: Report,
    *,
    plugin_rows: bool = True,
    anchors: list[type[Contender]] | None = None,
) -> None:
    callers = 1000
    with processes() as started:
        dev = start_devserver(started, token_lifetime=300)
        dev.faults(latency=LATENCY)
        asyncio.run(warm_up(dev))
        idle = asyncio.run(idle_stall(1.0))
        print(f"  idle loop: longest stall {ms(idle)} over 1 s")
        single = asyncio.run(herd(CorpAuthContender, dev, 1))
        describe("corpauth", single)
        plugin = asyncio.run(herd(CorpAuthContender, dev, callers))
        describe("corpauth", plugin)
        others = []
        for cls in anchors or []:
            result = asyncio.run(herd(cls, dev, callers))
            describe(cls.name, result)
            others.append((cls.name, result))
    if plugin_rows:
        report.add(
            "3. Herd: token requests (1,000 callers, cold, 50 ms endpoint)",
            f"{plugin.token_requests}",
            f"{callers} callers",
            ratio(plugin.token_requests, 1),
            "1",
            plugin.token_requests == 1 and plugin.failures == 0,
        )
        report.add(
            "3. Herd: wait p50 / p99",
            f"{ms(plugin.p50)} / {ms(plugin.p99)}",
            f"1 caller: {ms(single.p99)}",
            ratio(plugin.p99, single.p99),
            "–",
            None,
        )
        report.add(
            "3. Herd: longest event-loop stall",
            ms(plugin.stall),
            f"idle loop: {ms(idle)}",
            ratio(plugin.stall, idle),
            "< 10 ms",
            stall_verdict(plugin.stall, idle),
        )
    for name, r in others:
        report.add(
            f"7. {name}: herd token requests",
            f"{r.token_requests} ({r.failures} failed)",
            f"corpauth: {plugin.token_requests}",
            ratio(r.token_requests, plugin.token_requests),
            "1",
            r.token_requests == 1 and r.failures == 0,
            reference=True,
        )
        report.add(
            f"7. {name}: herd wait p50 / p99",
            f"{ms(r.p50)} / {ms(r.p99)}",
            f"corpauth: {ms(plugin.p50)} / {ms(plugin.p99)}",
            ratio(r.p99, plugin.p99),
            "–",
            None,
        )
        report.add(
            f"7. {name}: herd longest loop stall",
            ms(r.stall),
            f"corpauth: {ms(plugin.stall)}",
            ratio(r.stall, plugin.stall),
            "< 10 ms",
            stall_verdict(r.stall, idle),
            reference=True,
        )
