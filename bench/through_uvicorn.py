"""Measure 11: the per-request costs of measure 1, seen end to end through uvicorn.

One uvicorn worker serves ``bench.apps:plugin_app`` (``/bare``, ``/noop``, ``/bearer``,
``/me``; the plugin's router included last) and another Starlette's
``SessionMiddleware`` baseline holding the same user record in its cookie. A load
generator in a process of its own loads each path in turn, rotating the order every
round; a figure is requests per second of the server's CPU, and a ratio is taken per
round. HTTP parsing, the event loop and the load generator's share of the machine make
these ratios noisier than measure 1's, so they are information: measure 1 gives the
verdicts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import httpx

from .common import (
    SESSION_SECRET,
    Load,
    Profile,
    Report,
    alternate,
    load_figure,
    load_summary,
    processes,
    relayed_callback,
    start_devserver,
    start_uvicorn,
    throughput,
)

COOKIE = "corpauth_session"


def spread(values: Sequence[Load], baseline: Sequence[Load]) -> str:
    """Per-round ratios of requests per server CPU-second: median (lowest–highest)."""
    ratios = [a.per_cpu_second / b.per_cpu_second for a, b in zip(values, baseline, strict=True)]
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"


def run(profile: Profile, report: Report) -> None:
    rounds = profile.pick(7, 3)
    seconds = profile.pick(3, 1)
    with processes() as started:
        dev = start_devserver(started, token_lifetime=3600)
        app = start_uvicorn(started, "bench.apps:plugin_app", env=dev.corpauth_env())
        starlette = start_uvicorn(
            started,
            "bench.apps:starlette_session_app",
            env={"BENCH_SESSION_SECRET": SESSION_SECRET},
        )
        token = dev.user_token()
        with httpx.Client(timeout=10) as http:
            login = http.get(app.url + "/auth/login?next=/me")
            done = http.post(app.url + "/auth/callback", data=relayed_callback(login, token))
            if done.status_code != 303:
                raise RuntimeError(f"/auth/callback answered {done.status_code}")
            cookie = http.cookies[COOKIE]
            http.get(app.url + "/me").raise_for_status()
            http.get(app.url + "/bearer").raise_for_status()  # the company token, cached
        record = {
            "access_token": token["access_token"],
            "expires_at": time.time() + float(token["expires_in"]),
            "scope": str(token["scope"]).split(),
            "profile": {"preferred_username": "demo"},
        }
        with httpx.Client(timeout=10) as http:
            http.post(starlette.url + "/set", json=record).raise_for_status()
            starlette_cookie = http.cookies["session"]

        def load(url: str, pid: int, headers: dict[str, str] | None = None) -> Callable[[], Load]:
            return lambda: throughput(url, server_pid=pid, seconds=seconds, headers=headers)

        variants = {
            "/bare": load(app.url + "/bare", app.pid),
            "/noop": load(app.url + "/noop", app.pid),
            "/bearer": load(app.url + "/bearer", app.pid),
            "/me": load(app.url + "/me", app.pid, {"Cookie": f"{COOKIE}={cookie}"}),
            "SessionMiddleware": load(
                starlette.url + "/session", starlette.pid, {"Cookie": f"session={starlette_cookie}"}
            ),
        }
        for run_once in variants.values():
            run_once()  # warm-up
        dev.reset()
        results = alternate(variants, rounds=rounds)
        token_requests = dev.stats()["token_requests"]
    for name, loads in results.items():
        print(load_summary(name, loads))
    print(f"  token requests during the load: {token_requests}")
    for measure, variant, baseline in (
        ("bearer_token vs a no-op dependency", "/bearer", "/noop"),
        ("current_user vs Starlette SessionMiddleware", "/me", "SessionMiddleware"),
        ("a no-op dependency vs a bare endpoint", "/noop", "/bare"),
        ("bearer_token vs a bare endpoint", "/bearer", "/bare"),
    ):
        report.add(
            f"11. (information, through uvicorn) {measure}",
            load_figure(results[variant]),
            load_figure(results[baseline]),
            spread(results[variant], results[baseline]),
            "–",
            None,
        )
    report.add(
        "11. Token requests while the bearer_token route was under load",
        str(token_requests),
        "the token cached before",
        "–",
        "0",
        token_requests == 0,
    )
