"""Measure 6: four workers sharing the token through Redis, against four without Redis.

Four uvicorn processes (one worker each, as ``--workers 4`` would run them, but on their
own ports so that the load reaches every one of them) serve ``/token-id``, which tells
which token the worker holds. A generator spreads steady load over them for several token
lifetimes. Figure: token requests per rollover (token requests divided by the new tokens
one worker went through), with ``CORPAUTH_REDIS_URL`` set (target 1) and without (the
baseline: one per worker, 4).

Runs when ``fastapi_corpauth.redis`` exists (the ``redis`` extra) and ``redis-server`` is
installed; otherwise prints "skipped: Redis support not present".
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import httpx

from .common import (
    Devserver,
    Process,
    Profile,
    Report,
    free_port,
    processes,
    ratio,
    start_devserver,
    start_uvicorn,
)

NAME = "6. Four workers with Redis: token requests per rollover"
WORKERS = 4
LATENCY = 0.05


def redis_support() -> str | None:
    """Why measure 6 cannot run, or None when it can."""
    try:
        found = importlib.util.find_spec("fastapi_corpauth.redis") is not None
    except ImportError:
        found = False
    if not found:
        return "skipped: Redis support not present (no fastapi_corpauth.redis)"
    if importlib.util.find_spec("redis") is None:
        return "skipped: Redis support not present (redis-py not installed: .[redis])"
    if shutil.which("redis-server") is None:
        return "skipped: Redis support not present (no redis-server binary)"
    return None


def start_redis(started: list[Process]) -> str:
    port = free_port()
    proc = Process(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
    )
    started.append(proc)
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


async def load(
    urls: list[str], *, seconds: float, rate: float, path: str = "/token-id"
) -> tuple[dict[str, set[str]], int]:
    """Round-robin GETs of ``path``; returns the tokens each worker used, and failures."""
    seen: dict[str, set[str]] = defaultdict(set)
    failures = 0
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(url: str) -> None:
            nonlocal failures
            try:
                response = await client.get(url + path)
                response.raise_for_status()
                token = response.json()["token"]
                if token is not None:
                    seen[url].add(token)
            except httpx.HTTPError:
                failures += 1

        tasks = []
        t0 = time.perf_counter()
        for i in range(int(seconds * rate)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.get_running_loop().create_task(one(urls[i % len(urls)])))
        await asyncio.gather(*tasks)
    return seen, failures


def scenario(
    dev: Devserver,
    started: list[Process],
    redis_url: str | None,
    *,
    lifetime: float,
    lifetimes: float,
    worker_env: Callable[[int], Mapping[str, str]] | None = None,
    label: str | None = None,
) -> tuple[int, int, int]:
    """(token requests, rollovers per worker, failed requests) for one deployment.

    ``worker_env(i)`` adds variables for worker ``i`` (another Redis mode, another node).
    """
    env = dev.corpauth_env()
    if redis_url is not None:
        env["CORPAUTH_REDIS_URL"] = redis_url
    workers = [
        start_uvicorn(
            started, "bench.apps:plugin_app", env={**env, **(worker_env(i) if worker_env else {})}
        )
        for i in range(WORKERS)
    ]
    urls = [w.url for w in workers]
    before, _ = asyncio.run(load(urls, seconds=0.5, rate=40))  # cold start: not counted
    dev.reset()
    seen, failures = asyncio.run(load(urls, seconds=lifetime * lifetimes, rate=80))
    time.sleep(LATENCY + 0.5)  # a fetch in flight at the end completes
    token_requests = dev.stats()["token_requests"]
    # The tokens those last fetches brought, read without triggering a fetch.
    after, _ = asyncio.run(load(urls, seconds=0.1, rate=10 * len(urls), path="/cached-token-id"))
    new_tokens = [len((seen[u] | after[u]) - before[u]) for u in urls]
    for w in workers:
        proc = next(p for p in started if p.pid == w.pid)
        proc.stop()
        started.remove(proc)
    label = label or ("with Redis" if redis_url else "no Redis")
    print(
        f"  {label:10}: {token_requests} token requests, "
        f"new tokens per worker {new_tokens}, {failures} failed requests"
    )
    return token_requests, max(new_tokens), failures


def run(profile: Profile, report: Report) -> None:
    reason = redis_support()
    if reason is not None:
        report.skip(NAME, reason)
        return
    lifetime = profile.pick(8.0, 4.0)
    lifetimes = profile.pick(3, 2)
    print(f"  {WORKERS} workers, token lifetime {lifetime:.0f} s, {lifetimes} lifetimes, 80 req/s")
    with processes() as started:
        dev = start_devserver(started, token_lifetime=lifetime)
        dev.faults(latency=LATENCY)
        redis_url = start_redis(started)
        shared = scenario(dev, started, redis_url, lifetime=lifetime, lifetimes=lifetimes)
        alone = scenario(dev, started, None, lifetime=lifetime, lifetimes=lifetimes)
    per_shared = ratio(shared[0], shared[1])
    per_alone = ratio(alone[0], alone[1])
    report.add(
        NAME,
        f"{per_shared:.2f} ({shared[0]} for {shared[1]} rollovers)",
        f"no Redis: {per_alone:.2f} ({alone[0]} for {alone[1]})",
        ratio(per_shared, per_alone),
        "1 (vs 4)",
        shared[0] == shared[1] and shared[1] > 0 and shared[2] == 0,
    )


if __name__ == "__main__":  # pragma: no cover - manual use
    sys.exit("run it through bench/run.py --only 6")
