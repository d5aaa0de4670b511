"""Measure 1: per-request overhead of ``Depends(corpauth.bearer_token)`` (cached token).

One uvicorn worker serves ``/bare``, ``/noop`` and ``/bearer`` (see ``bench/apps.py``); wrk
loads them in turn, rotating the order every round, and the ratio is the median of the
per-round ratios of requests per server-CPU-second. The bank API is never called; the
token comes once from a devserver process.
"""

from __future__ import annotations

import httpx

from .common import (
    Profile,
    Report,
    alternate,
    load_figure,
    load_summary,
    paired_ratio,
    processes,
    start_devserver,
    start_uvicorn,
    throughput,
)

PATHS = ("/bare", "/noop", "/bearer")


def run(profile: Profile, report: Report) -> None:
    rounds = profile.pick(7, 3)
    seconds = profile.pick(3, 1)
    with processes() as started:
        dev = start_devserver(started, token_lifetime=3600)
        app = start_uvicorn(started, "bench.apps:plugin_app", env=dev.corpauth_env())
        # Warm the cache: one token request, then every request reuses the token.
        httpx.get(app.url + "/bearer", timeout=10).raise_for_status()
        for path in PATHS:
            throughput(app.url + path, server_pid=app.pid, seconds=1)
        dev.reset()
        results = alternate(
            {
                path: (
                    lambda path=path: throughput(
                        app.url + path, server_pid=app.pid, seconds=seconds
                    )
                )
                for path in PATHS
            },
            rounds=rounds,
        )
        token_requests = dev.stats()["token_requests"]
    for path, loads in results.items():
        print(load_summary(path, loads))
    print(f"  token requests during the load: {token_requests}")
    bare, noop, bearer = (results[p] for p in PATHS)
    r = paired_ratio(bearer, bare)
    report.add(
        "1. bearer_token (cached) vs bare endpoint",
        load_figure(bearer),
        load_figure(bare),
        r,
        "≥ 0.95",
        r >= 0.95 and token_requests == 0,
    )
    report.add(
        "1. (attribution) a no-op FastAPI dependency vs bare",
        load_figure(noop),
        load_figure(bare),
        paired_ratio(noop, bare),
        "–",
        None,
    )
    report.add(
        "1. (attribution) bearer_token vs the no-op dependency",
        load_figure(bearer),
        load_figure(noop),
        paired_ratio(bearer, noop),
        "–",
        None,
    )
