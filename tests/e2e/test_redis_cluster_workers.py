"""Four worker processes on a six-node Redis Cluster, each entering through another node.

The development server and the example app run as real processes (uvicorn), configured
only through ``CORPAUTH_*`` variables with ``CORPAUTH_REDIS_MODE=cluster``; the cluster
is the test session's (``tests/redis_server.py``). The workers are shared by the tests
of this module; the last one kills a master under load.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import DEV_HEADERS, free_port, running
from tests.e2e.test_workers import (
    LOAD_SECONDS,
    REFRESH_AFTER,
    TOKEN_LIFETIME,
    app_env,
    devserver,
    home,
    load,
    sign_in,
    token_requests,
)
from tests.redis_server import RedisClusterServers, cluster_target

pytestmark = pytest.mark.e2e

#: The nodes the four workers enter through: at the start two masters and two replicas.
ENTRIES = (0, 2, 4, 5)


@dataclass
class Workers:
    idp: str
    bases: list[str]
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(log.read_text() for log in self.logs)


@pytest.fixture(scope="module")
def cluster_workers(shared_redis_cluster: RedisClusterServers) -> Iterator[Workers]:
    target = cluster_target(shared_redis_cluster)
    shared_redis_cluster.heal()
    with ExitStack() as stack:
        idp = stack.enter_context(devserver())
        bases, starting = [], []
        for entry in ENTRIES:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            args = ["-m", "uvicorn", "tests.e2e.app:app", "--host", "127.0.0.1"]
            args += ["--port", str(port), "--no-access-log"]
            # A 1 s Redis timeout: this module is about failover, and a command stuck on
            # the dead master should not outlast the cluster's own node timeout by much.
            env = app_env(idp, None) | target.env(entry) | {"CORPAUTH_REDIS_TIMEOUT": "1.0"}
            starting.append(running(args, ready_url=base + "/", env=env))
            bases.append(base)
        logs = enter_all(stack, starting)
        yield Workers(idp, bases, logs)


def enter_all(stack: ExitStack, managers: Sequence[AbstractContextManager[Path]]) -> list[Path]:
    """Enter the managers at once (the workers start in parallel); ``stack`` exits them."""
    with ThreadPoolExecutor(len(managers)) as pool:
        entered = [pool.submit(manager.__enter__) for manager in managers]
    for manager, future in zip(managers, entered, strict=True):
        if future.exception() is None:
            stack.push(manager)
    return [future.result() for future in entered]  # raises if any failed to start


@pytest.fixture
def workers(cluster_workers: Workers, redis_cluster_servers: RedisClusterServers) -> Workers:
    """The module's workers on a whole, flushed cluster."""
    return cluster_workers


def test_four_workers_on_a_cluster_share_one_token(
    workers: Workers, record_property: Callable[[str, object], None]
) -> None:
    httpx.post(workers.idp + "/_dev/reset", headers=DEV_HEADERS, timeout=5).raise_for_status()
    statuses = asyncio.run(load([b + "/api/accounts" for b in workers.bases], LOAD_SECONDS))
    requests = token_requests(workers.idp)
    record_property("token_requests_on_cluster", requests)
    print(
        f"\n4 workers on a cluster, {LOAD_SECONDS}s of load, {TOKEN_LIFETIME}s tokens: "
        f"{requests} token requests ({sum(statuses.values())} API calls)"
    )
    assert set(statuses) == {200}, statuses
    # One token per refresh interval for the whole deployment, whichever node each
    # worker entered through; without sharing it would be at least one per worker each.
    assert requests <= math.ceil(LOAD_SECONDS / REFRESH_AFTER) + 1


def test_sign_ins_work_across_workers_on_a_cluster(workers: Workers) -> None:
    a, b, c, d = workers.bases
    sessions = [sign_in(start, finish, workers.idp) for start, finish in ((a, b), (c, d), (d, a))]
    for session in sessions:
        for base in workers.bases:
            assert 'id="who"' in home(base, session)
    logout = httpx.post(
        c + "/auth/logout", headers={"Cookie": f"corpauth_session={sessions[0]}"}, timeout=5
    )
    assert logout.status_code == 303
    assert "You are not signed in" in home(a, sessions[0])
    assert 'id="who"' in home(b, sessions[1])


def try_sign_in(start: str, finish: str, idp: str) -> str | None:
    """A sign-in, or None if a step answered 503 (Redis switching); never a 500."""
    try:
        return sign_in(start, finish, idp)
    except AssertionError as exc:
        assert "503" in str(exc) or "temporarily" in str(exc), exc
        return None


def test_a_master_killed_mid_load_costs_503s_then_recovers_by_itself(
    workers: Workers,
    redis_cluster_servers: RedisClusterServers,
    record_property: Callable[[str, object], None],
) -> None:
    cluster = redis_cluster_servers
    idp, bases = workers.idp, workers.bases
    session = sign_in(bases[0], bases[1], idp)
    session_key = next(k for k in cluster_target(cluster).keys() if b":session:" in k)
    doomed = cluster.master_for(session_key.decode())
    doomed.wait_replicated()  # the session reached the replica before the crash
    headers = {"Cookie": f"corpauth_session={session}"}
    paths = [p for b in bases for p in (b + "/", b + "/api/accounts", b + "/accounts")]
    logins = [b + "/auth/login?next=/" for b in bases]

    async def scenario() -> tuple[Counter[int], Counter[int], float]:
        before = await load(paths, 0.5, headers=headers)
        during: Counter[int] = Counter()
        stop = asyncio.Event()

        async def keep_loading() -> None:  # pages, API calls and new sign-ins, throughout
            nonlocal during
            while not stop.is_set():
                during += await load(paths + logins, 0.3, headers=headers)

        loading = asyncio.create_task(keep_loading())
        cluster.kill(doomed)
        killed_at = time.monotonic()
        recovered_at = math.inf
        try:
            while time.monotonic() - killed_at < 30:
                sign_ins = await asyncio.gather(
                    *(
                        asyncio.to_thread(try_sign_in, s, f, idp)
                        for s, f in zip(bases, bases[1:] + bases[:1], strict=True)
                    )
                )
                if all(sign_ins):  # a sign-in started and completed on every worker
                    recovered_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await loading
        return before, during, recovered_at - killed_at

    try:
        before, during, recovery = asyncio.run(scenario())
    finally:
        cluster.heal()
    record_property("sign_in_recovery_seconds", round(recovery, 2))
    print(
        f"\nmaster killed: sign-ins work again on every worker after {recovery:.1f}s; "
        f"statuses meanwhile {dict(sorted(during.items()))}"
    )
    log = workers.log_text()
    assert set(before) <= {200, 401, 303}, before
    assert 500 not in during and {s for s in during if s >= 500} <= {503}, (during, log[-3000:])
    assert recovery < math.inf, "sign-ins did not recover by themselves"
    # Nothing replicated was lost: the session from before the crash is still valid (a
    # worker whose view of the cluster is still settling may answer "signed out" once).
    for base in bases:
        deadline = time.monotonic() + 10
        while 'id="who"' not in home(base, session) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert 'id="who"' in home(base, session)
    assert "Traceback" not in log, log[-3000:]
    for worker_log in workers.logs:  # each worker noticed, and recovered by itself
        text = worker_log.read_text()
        assert "Redis unavailable" in text and "Redis available again" in text, text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
