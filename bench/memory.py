"""Memory: resident memory of the example app through 10,000 sign-ins.

The example app (``example_app.main:app``, in-process ``MemorySessionStore`` bounded by
``CORPAUTH_SESSION_STORE_MAX_ENTRIES`` at half the number of sign-ins) runs under
uvicorn; sign-ins go through ``/auth/login`` and the fragment relay's POST to
``/auth/callback``, with a real token from the devserver the app mounts under ``/idp``.
Each sign-in leaves its session and, for a minute, a small used-state marker that
answers a replayed callback with ``state_reused``. The store evicts what expires first,
so markers give way to sessions: once as many sign-ins as the bound have been made, the
store holds only sessions. Figure: RSS at the end; baseline: RSS at that point; target:
flat from there on (within 5 %).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from .common import (
    DEV_HEADERS,
    DEV_TOKEN,
    SESSION_SECRET,
    Profile,
    Report,
    free_port,
    processes,
    ratio,
    relayed_callback,
    rss_kib,
    start_uvicorn,
)

COOKIE = "corpauth_session"
CONCURRENCY = 8


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


async def sign_ins(
    base: str, pid: int, total: int, every: int, token: dict[str, object]
) -> tuple[list[tuple[int, int]], list[str]]:
    """Sign in ``total`` times; RSS every ``every`` sign-ins; the session cookies."""
    checkpoints = [(0, rss_kib(pid))]
    cookies: list[str] = []
    done = 0
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def one() -> str:
            login = await http.get(base + "/auth/login?next=/")
            form = relayed_callback(login, token)
            done_ = await http.post(
                base + "/auth/callback",
                data=form,
                headers={"Cookie": f"{COOKIE}={login.cookies[COOKIE]}"},
            )
            if done_.status_code != 303:
                raise RuntimeError(f"/auth/callback answered {done_.status_code}")
            http.cookies.clear()
            return done_.cookies[COOKIE]

        while done < total:
            batch = min(every, total - done)
            for start in range(0, batch, CONCURRENCY):
                n = min(CONCURRENCY, batch - start)
                cookies += await asyncio.gather(*(one() for _ in range(n)))
            done += batch
            checkpoints.append((done, rss_kib(pid)))
    return checkpoints, cookies


async def signed_in(base: str, cookies: list[str]) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        count = 0
        for cookie in cookies:
            page = await http.get(base + "/", headers={"Cookie": f"{COOKIE}={cookie}"})
            count += 'id="who"' in page.text
        return count


def run(profile: Profile, report: Report) -> None:
    total = profile.pick(10_000, 3_000)
    bound = total // 2
    every = profile.pick(500, 250)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "EXAMPLE_PUBLIC_URL": base,
        "CORPAUTH_SESSION_SECRET": SESSION_SECRET,
        "CORPAUTH_SESSION_STORE_MAX_ENTRIES": str(bound),
        "CORPAUTH_DEVELOPMENT": "true",
        "EXAMPLE_DEV_TOKEN": DEV_TOKEN,
    }
    with processes() as started:
        app = start_uvicorn(
            started, "example_app.main:app", env=env, ready_path="/", factory=False, port=port
        )
        # A customer's token, as the implicit sign-in at the (embedded) bank issues it.
        response = httpx.post(
            base + "/idp/_dev/users/demo/tokens", json={}, headers=DEV_HEADERS, timeout=10
        )
        response.raise_for_status()
        token = {**response.json(), "iss": f"{base}/idp/realms/bog"}
        t0 = time.perf_counter()
        checkpoints, cookies = asyncio.run(sign_ins(base, app.pid, total, every, token))
        elapsed = time.perf_counter() - t0
        last = cookies[-1000:]
        alive = asyncio.run(signed_in(base, last))
    print(f"  {total} sign-ins in {elapsed:.1f} s, store bound {bound} entries")
    print("  RSS: " + ", ".join(f"{n}: {mib(k)}" for n, k in checkpoints))
    at_bound = next(k for n, k in checkpoints if n >= bound)
    end = checkpoints[-1][1]
    r = ratio(end, at_bound)
    start = mib(checkpoints[0][1])
    report.add(
        f"Memory: example app RSS after {total:,} sign-ins (bound {bound:,} entries)",
        mib(end),
        f"store full of sessions ({bound:,} sign-ins): {mib(at_bound)}; at start {start}",
        r,
        "flat after the bound (≤ 1.05)",
        r <= 1.05,
    )
    report.add(
        "Memory: sessions of the last 1,000 sign-ins still signed in",
        f"{alive} of {len(last)}",
        f"{len(last)} signed in",
        ratio(alive, len(last)),
        "–",
        None,
    )
