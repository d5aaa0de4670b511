"""Measure 10: one Redis node, a Redis Cluster and Sentinel side by side.

The same four workers (``bench.apps:plugin_app``) run against each deployment in turn,
configured only through ``CORPAUTH_REDIS_*``: one redis-server; a six-node cluster
(three masters, three replicas) that each worker enters through another node; a master,
a replica and three Sentinels. The servers are the test suite's (``tests/redis_server.py``).

Figures:

* token requests per rollover, as in measure 6 (target 1 in every mode: the token and its
  lease share a hash slot, so the lease works on a cluster whichever node a worker
  entered through);
* sign-ins per second: browsers that each start a sign-in on one worker
  (``/auth/login``: the state goes to Redis) and complete it on the next
  (``/auth/callback``: the state is taken, the marker and the session written), rounds
  alternating between the modes; the ratio is against one node, measured in the same
  run.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from .common import (
    Process,
    Profile,
    Report,
    processes,
    ratio,
    relayed_callback,
    start_devserver,
    start_uvicorn,
)
from .workers import LATENCY, WORKERS, redis_support, scenario

NAME_TOKENS = "10. Redis modes: token requests per rollover"
NAME_SIGN_INS = "10. Redis modes: sign-ins per second"
BROWSERS = 16


@contextmanager
def deployments() -> Iterator[dict[str, Any]]:
    """Each Redis deployment, started, as a ``RedisTarget`` by name; stopped at the end."""
    from tests.redis_server import (
        RedisClusterServers,
        RedisServer,
        SentinelServers,
        cluster_target,
        sentinel_target,
        standalone_target,
    )

    binary = shutil.which("redis-server")
    assert binary is not None
    with ExitStack() as stack:
        single = RedisServer(binary)
        stack.callback(single.close)
        single.start()
        cluster = RedisClusterServers(binary)
        stack.callback(cluster.close)
        cluster.start()
        sentinel = SentinelServers(binary)
        stack.callback(sentinel.close)
        sentinel.start()
        yield {
            "one node": standalone_target(single),
            "cluster": cluster_target(cluster),
            "sentinel": sentinel_target(sentinel),
        }


async def sign_ins(urls: list[str], token: dict[str, Any], seconds: float) -> tuple[int, int]:
    """(completed, failed) sign-ins of ``BROWSERS`` concurrent browsers in ``seconds``."""
    completed = failed = 0
    deadline = time.perf_counter() + seconds

    async def browser(i: int) -> None:
        nonlocal completed, failed
        start, finish = urls[i % len(urls)], urls[(i + 1) % len(urls)]
        async with httpx.AsyncClient(timeout=10) as http:
            while time.perf_counter() < deadline:
                http.cookies.clear()
                try:
                    login = await http.get(start + "/auth/login?next=/me")
                    done = await http.post(
                        finish + "/auth/callback", data=relayed_callback(login, token)
                    )
                except (httpx.HTTPError, RuntimeError):
                    failed += 1
                    continue
                if done.status_code == 303:
                    completed += 1
                else:
                    failed += 1

    await asyncio.gather(*(browser(i) for i in range(BROWSERS)))
    return completed, failed


def run(profile: Profile, report: Report) -> None:
    reason = redis_support()
    if reason is not None:
        report.skip(NAME_TOKENS, reason)
        return
    lifetime = profile.pick(8.0, 4.0)
    lifetimes = profile.pick(3, 2)
    rounds = profile.pick(5, 3)
    seconds = profile.pick(3.0, 1.5)
    with processes() as started, deployments() as targets:
        dev = start_devserver(started, token_lifetime=lifetime)
        dev.faults(latency=LATENCY)
        print(
            f"  token rollovers: {WORKERS} workers, {lifetime:.0f} s tokens, {lifetimes} lifetimes"
        )
        rollovers = {
            name: scenario(
                dev,
                started,
                None,
                lifetime=lifetime,
                lifetimes=lifetimes,
                worker_env=target.env,
                label=name,
            )
            for name, target in targets.items()
        }
        dev.clear_faults()
        token = dev.user_token()  # a customer's: a service account signs no one in
        workers: dict[str, list[str]] = {}
        for name, target in targets.items():
            env = {**dev.corpauth_env()}
            workers[name] = [
                start_uvicorn(started, "bench.apps:plugin_app", env={**env, **target.env(i)}).url
                for i in range(WORKERS)
            ]
        print(f"  sign-ins: {BROWSERS} browsers, {rounds} rounds of {seconds:.1f} s per mode")
        rates: dict[str, list[float]] = {name: [] for name in targets}
        failures: dict[str, int] = dict.fromkeys(targets, 0)
        for urls in workers.values():  # warm-up, not counted
            asyncio.run(sign_ins(urls, token, 0.5))
        names = list(workers)
        for r in range(rounds):  # each mode goes first in turn
            for name in names[r % len(names) :] + names[: r % len(names)]:
                done, failed = asyncio.run(sign_ins(workers[name], token, seconds))
                rates[name].append(done / seconds)
                failures[name] += failed
        stop(started)
    for name, rate in rates.items():
        print(
            f"  {name:10}: sign-ins/s {', '.join(f'{r:.0f}' for r in rate)}; "
            f"{failures[name]} failed"
        )
    one = rollovers["one node"]
    for name, (requests, rolled, failed) in rollovers.items():
        report.add(
            f"{NAME_TOKENS} ({name})",
            f"{ratio(requests, rolled):.2f} ({requests} for {rolled} rollovers)",
            f"one node: {ratio(one[0], one[1]):.2f}",
            ratio(ratio(requests, rolled), ratio(one[0], one[1])),
            "1",
            requests == rolled and rolled > 0 and failed == 0,
        )
    base = rates["one node"]
    for name, rate in rates.items():
        if name == "one node":
            report.add(
                f"{NAME_SIGN_INS} ({name})",
                f"{statistics.median(rate):.0f}/s ({min(rate):.0f}–{max(rate):.0f})",
                "–",
                "–",
                "–",
                None,
            )
            continue
        # Per round, against one node in the same round: drift hits both alike.
        per_round = [r / b for r, b in zip(rate, base, strict=True)]
        verdict: bool | str = failures[name] == 0 and min(per_round) >= 0.7
        if failures[name] == 0 and min(per_round) < 0.7 <= max(per_round):
            verdict = "inconclusive"
        report.add(
            f"{NAME_SIGN_INS} ({name})",
            f"{statistics.median(rate):.0f}/s ({min(rate):.0f}–{max(rate):.0f})",
            f"one node: {statistics.median(base):.0f}/s",
            f"{statistics.median(per_round):.2f} ({min(per_round):.2f}–{max(per_round):.2f})",
            "≥ 0.70 of one node in every round, 0 failed",
            verdict,
        )


def stop(started: list[Process]) -> None:
    for proc in reversed(started):
        proc.stop()
    started.clear()
