"""Measure 8: what sessions and sign-ins leave in memory, and whether anything leaks.

Sign-ins run in process (``bench/signins.py``): ASGI calls into an app that mounts the
plugin's router, the development bank in process for discovery and keys, and a pool
of 2,048 distinct customers' tokens, more than the verifier remembers, so that every
sign-in checks a signature. Time is a stopped clock that moves 50 ms per sign-in, so
that the same sign-ins see the same expiries on any machine. Python's allocations are
counted with ``tracemalloc``; Redis's with ``MEMORY USAGE`` and ``INFO memory``.

* Bytes per session: what one more signed-in customer adds once every bounded cache
  is full (the used-state markers have expired before each count).
* Bytes per pending sign-in: what ``GET /auth/login`` leaves server-side (a pending
  sign-in travels in the browser's sealed cookie; its size is shown too).
* Leak check: 10,000 sign-ins after 7,500 that fill every bounded structure (the
  store at its bound, the caches of verified cookies, record keys, opened records and
  verified tokens); each customer loads a page and every other one signs out. Traced
  memory is sampled every 50 sign-ins; the slope of the line fitted to the samples
  must stay under 100 bytes per sign-in, and the last customers who did not sign out
  must all still be signed in. The full run repeats the check with 100 bytes
  kept on purpose per sign-in, to show that such a leak is caught.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from contextlib import AsyncExitStack

from fastapi import FastAPI

from fastapi_corpauth import MemorySessionStore

from .common import Process, Profile, Report, processes
from .signins import Clock, Site, bank, corpauth_for, token_pool
from .workers import redis_support, start_redis

TOKENS = 2048
LEAK_LIMIT = 100  # bytes per sign-in
LEAK_RUN = 10_000  # sign-ins measured
#: Past every bound, and past the first resize of the tables of the 4,096-entry caches
#: (remembered cookies and record keys), which happens near their 5,500th entry.
WARM_UP = 7_500
STORE_BOUND = 2_000
SAMPLE_EVERY = 50
SECONDS_PER_SIGN_IN = 0.05


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def in_memory(profile: Profile, report: Report) -> None:
    """What one more session, and one more pending sign-in, adds to the process.

    Measured at the margin, once every bounded cache is full (7,500 of each first):
    the caches of verified cookies, record keys and verified tokens hold the same
    whatever the number of customers, so a figure taken below their bounds would count
    them as if they grew with every session.
    """
    devserver = bank()
    pool = token_pool(devserver, TOKENS)
    clock = Clock(stopped=True)
    store = MemorySessionStore(max_entries=1_000_000, clock=clock)
    corpauth = corpauth_for(devserver, clock=clock, store=store)
    site = Site(corpauth)
    fill, more = WARM_UP, profile.pick(4_000, 2_000)

    async def settled() -> int:
        # The used-state markers expire (they outlive a state's validity), and writes
        # purge them, 16 per write.
        clock.skipped += corpauth.settings.state_max_age + 1
        for _ in range(len(store) // 8 + 100):
            await store.set("bench:purge", {"n": 1}, ttl=1)
        await store.delete("bench:purge")
        return traced()

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(FastAPI()))
        tracemalloc.start()
        # Pending sign-ins: nothing stays on the server; the browser carries a cookie.
        for _ in range(fill):
            await site.login()
        entries, before = len(store), await settled()
        cookie_bytes = 0
        for _ in range(more):
            cookie_bytes += len((await site.login())[1])
        pending = (await settled() - before) / more
        pending_entries = len(store) - entries
        # Sessions: what stays per signed-in customer once the markers have expired.
        for i in range(fill):
            clock.skipped += SECONDS_PER_SIGN_IN
            await site.sign_in(pool[i % TOKENS])
        before = await settled()
        entries = len(store)
        last = []
        for i in range(more):
            clock.skipped += SECONDS_PER_SIGN_IN
            last.append(await site.sign_in(pool[(fill + i) % TOKENS]))
            del last[:-10]
        per_session = (await settled() - before) / more
        sessions = len(store) - entries
        tracemalloc.stop()
        assert all([await site.me(c) == 200 for c in last])
    print(
        f"  in memory: {per_session:.0f} B per session ({sessions} store entries for {more} "
        f"sign-ins); {pending:.0f} B and {pending_entries} store entries per "
        f"{more} pending sign-ins (cookie {cookie_bytes / more:.0f} B)"
    )
    report.add(
        "8. Memory per session, in-process store (one more, caches full)",
        f"{per_session:,.0f} B",
        f"{sessions:,} entries for {more:,} sign-ins",
        "–",
        "–",
        None,
    )
    report.add(
        f"8. Server memory for {more:,} more pending sign-ins, in-process store",
        f"{pending_entries} entries, {pending:,.0f} B each",
        f"the browser carries {cookie_bytes / more:.0f} B",
        "–",
        "0 entries",
        pending_entries == 0,
    )


async def leak_check(profile: Profile, report: Report, *, canary: bool = False) -> float:
    """Bytes per sign-in that stay: the slope of traced memory (see the module docstring).

    ``canary``: each sign-in also keeps 100 bytes, the leak the check must catch.
    """
    devserver = bank()
    pool = token_pool(devserver, TOKENS)
    clock = Clock(stopped=True)
    store = MemorySessionStore(max_entries=STORE_BOUND, clock=clock)
    corpauth = corpauth_for(devserver, clock=clock, store=store)
    site = Site(corpauth)
    kept_on_purpose: list[bytes] = []
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(FastAPI()))
        tracemalloc.start()

        async def customer(i: int) -> str:
            # Time moves with the sign-ins, not with how fast this machine runs them: a
            # used-state marker (ten minutes) lives through 12,000 of them everywhere.
            clock.skipped += SECONDS_PER_SIGN_IN
            cookie = await site.sign_in(pool[i % TOKENS])
            if await site.me(cookie) != 200:
                raise RuntimeError("a new session did not open")
            if i % 2:
                await site.sign_out(cookie)
            if canary:
                kept_on_purpose.append(bytes(LEAK_LIMIT - 33))  # 100 B with its header
            return cookie

        started = time.perf_counter()
        for i in range(WARM_UP):
            await customer(i)
        # Bounded structures fill and empty in sawtooths (the store's expiry heap is
        # rebuilt when stale items pile up, a cache's table when deleted slots do), with
        # periods of a few thousand sign-ins and different phases: the slope of a line
        # fitted to samples over several periods is the growth, not two moments.
        samples: list[tuple[int, int]] = []
        kept = []
        for i in range(LEAK_RUN):
            kept.append(await customer(WARM_UP + i))
            if i % SAMPLE_EVERY == 0:
                samples.append((i, traced()))
            if len(kept) > 1000:
                del kept[:-1000]
        tracemalloc.stop()
        elapsed = time.perf_counter() - started
        last = [c for i, c in enumerate(kept) if not (WARM_UP + LEAK_RUN - 1000 + i) % 2]
        alive = sum([await site.me(c) == 200 for c in last])
    quarter = LEAK_RUN // 4
    fitted = statistics.linear_regression([i for i, _ in samples], [m for _, m in samples])
    per_sign_in = fitted.slope
    lowest = [
        min(m for i, m in samples if q * quarter <= i < (q + 1) * quarter) / 1024 for q in range(4)
    ]
    print(
        f"  leak check{' (canary: 100 B kept per sign-in)' if canary else ''}: "
        f"{WARM_UP + LEAK_RUN} sign-ins in {elapsed:.0f} s; lowest traced memory per quarter "
        f"{', '.join(f'{t:,.0f}' for t in lowest)} KiB; fitted {per_sign_in:.1f} B per sign-in; "
        f"{alive} of {len(last)} signed in"
    )
    if canary:
        return per_sign_in
    report.add(
        f"8. Leak check: memory kept per sign-in over {LEAK_RUN:,} sign-ins",
        f"{per_sign_in:,.1f} B per sign-in",
        f"after {WARM_UP:,} that fill every bound",
        "–",
        f"< {LEAK_LIMIT} B per sign-in",
        per_sign_in < LEAK_LIMIT,
    )
    report.add(
        "8. Customers of the last 1,000 sign-ins who did not sign out, still signed in",
        f"{alive} of {len(last)}",
        f"store bound {STORE_BOUND:,} entries",
        "–",
        "all",
        alive == len(last),
    )
    return per_sign_in


async def in_redis(profile: Profile, report: Report, redis_url: str) -> None:
    import redis.asyncio as aioredis

    devserver = bank()
    pool = token_pool(devserver, 500)
    clock = Clock()
    corpauth = corpauth_for(devserver, clock=clock, redis_url=redis_url)
    site = Site(corpauth)
    raw = aioredis.Redis.from_url(redis_url)
    count = profile.pick(500, 200)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(FastAPI()))
        await site.sign_in(pool[0])
        keys_before = await raw.dbsize()
        used_before = int((await raw.info("memory"))["used_memory"])
        for _ in range(count):
            await site.login()
        pending_keys = await raw.dbsize() - keys_before
        pending_bytes = (int((await raw.info("memory"))["used_memory"]) - used_before) / count
        for i in range(count):
            await site.sign_in(pool[i % len(pool)])
        usage = [
            int(await raw.memory_usage(key) or 0)
            async for key in raw.scan_iter(match="*session:*", count=1000)
        ]
    await raw.aclose()
    per_session = sum(usage) / len(usage)
    print(
        f"  Redis: {per_session:.0f} B per session key ({len(usage)} keys); "
        f"{pending_keys} keys for {count} pending sign-ins"
    )
    report.add(
        "8. Memory per session, Redis (MEMORY USAGE)", f"{per_session:,.0f} B", "–", "–", "–", None
    )
    report.add(
        f"8. Redis keys for {count:,} pending sign-ins",
        f"{pending_keys} keys ({pending_bytes:,.0f} B each in used_memory)",
        "–",
        "–",
        "0 keys",
        pending_keys == 0,
    )


def run(profile: Profile, report: Report) -> None:
    asyncio.run(in_memory(profile, report))
    asyncio.run(leak_check(profile, report))
    if not profile.quick:
        caught = asyncio.run(leak_check(profile, report, canary=True))
        report.add(
            "8. The leak check run with a 100-byte leak per sign-in added (canary)",
            f"{caught:,.1f} B per sign-in",
            "–",
            "–",
            f"≥ {LEAK_LIMIT * 0.9:.0f} B per sign-in (caught)",
            caught >= LEAK_LIMIT * 0.9,
        )
    reason = redis_support()
    if reason is not None:
        report.skip("8. Memory in Redis", reason)
        return
    started: list[Process]
    with processes() as started:
        redis_url = start_redis(started)
        asyncio.run(in_redis(profile, report, redis_url))
