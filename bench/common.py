"""Shared helpers: ports, server processes, load generation, percentiles, loop stalls, tables."""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

CLIENT_ID = "corp-app"
CLIENT_SECRET = "dev-secret"
SESSION_SECRET = "bench-session-secret-0123456789abcdef"
#: The development servers' /_dev controls answer this token only.
DEV_TOKEN = "bench-dev-controls-token"
DEV_HEADERS = {"X-Dev-Token": DEV_TOKEN}
REALM = "bog"


@dataclass(frozen=True)
class Profile:
    """How long and how hard: the full run or ``--quick``."""

    quick: bool

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Row:
    """One line of the final table."""

    measure: str
    figure: str
    baseline: str
    ratio: str
    target: str
    result: str  # PASS, MISS, inconclusive, ref: PASS/MISS (anchors), info, skipped


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(
        self,
        measure: str,
        figure: str,
        baseline: str,
        ratio: float | str | None,
        target: str,
        passed: bool | str | None,
        *,
        reference: bool = False,
    ) -> Row:
        """``passed``: True, False, None (an information row) or "inconclusive" (the
        spread of the measure straddles its target)."""
        if isinstance(ratio, float):
            ratio_text = "∞" if math.isinf(ratio) else f"{ratio:.2f}"
        else:
            ratio_text = ratio or "–"
        if passed is None:
            result = "info"
        elif isinstance(passed, str):
            result = ("ref: " if reference else "") + passed
        elif reference:
            result = "ref: " + ("PASS" if passed else "MISS")
        else:
            result = "PASS" if passed else "MISS"
        row = Row(measure, figure, baseline, ratio_text, target, result)
        self.rows.append(row)
        print(
            f"  -> {measure}: {figure} | baseline {baseline} | ratio {ratio_text} | "
            f"target {target} | {result}",
            flush=True,
        )
        return row

    def skip(self, measure: str, reason: str) -> None:
        self.rows.append(Row(measure, reason, "–", "–", "–", "skipped"))
        print(f"  -> {measure}: {reason}", flush=True)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| Measure | Figure | Baseline | Ratio | Target | Result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.measure, r.figure, r.baseline, r.ratio, r.target, r.result)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def ratio(a: float, b: float) -> float:
    if b == 0:
        return math.inf if a else 1.0
    return a / b


def paired_ratio(values: Sequence[Load], baseline: Sequence[Load]) -> float:
    """Median of per-round ratios of requests per server-CPU-second.

    Each pair ran back to back, so slow drift cancels out, and CPU time does not count
    the moments another process on a shared machine had the core.
    """
    return statistics.median(
        a.per_cpu_second / b.per_cpu_second for a, b in zip(values, baseline, strict=True)
    )


def load_summary(name: str, loads: Sequence[Load]) -> str:
    rps = ", ".join(f"{x.rps:.0f}" for x in loads)
    cpu = ", ".join(f"{x.per_cpu_second:.0f}" for x in loads)
    return f"  {name:18} req/s: {rps}   req/CPU-s: {cpu}"


def load_figure(loads: Sequence[Load]) -> str:
    rps = median([x.rps for x in loads])
    cpu = median([x.per_cpu_second for x in loads])
    return f"{rps:.0f} req/s ({cpu:.0f}/CPU-s)"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: no stray CORPAUTH_*, the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORPAUTH_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


class Process:
    """A child process in its own session, always stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        self.popen = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=child_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self.popen.stderr is not None:
            self.popen.stderr.close()

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                err = self.popen.stderr.read().decode(errors="replace") if self.popen.stderr else ""
                raise RuntimeError(f"{self.args} exited early:\n{err[-2000:]}")
            try:
                httpx.get(url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"{url} did not come up within {timeout}s")


@contextmanager
def processes() -> Iterator[list[Process]]:
    """Collects processes started in the block and stops them all at the end."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def start_uvicorn(
    started: list[Process],
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/health",
    factory: bool = True,
    port: int | None = None,
) -> Served:
    """Serve ``app`` (``module:attr``, a factory unless told) with one uvicorn worker."""
    port = port or free_port()
    proc = Process(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            *(["--factory"] if factory else []),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    started.append(proc)
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(base + ready_path)
    return Served(url=base, pid=proc.pid)


@dataclass(frozen=True)
class Served:
    url: str
    pid: int


def start_devserver(started: list[Process], *, token_lifetime: float) -> Devserver:
    """A devserver process (the same command as ``python -m fastapi_corpauth.devserver``)."""
    port = free_port()
    proc = Process(
        [
            sys.executable,
            "-m",
            "fastapi_corpauth.devserver",
            "--port",
            str(port),
            "--token-lifetime",
            str(token_lifetime),
            "--client",
            f"{CLIENT_ID}:{CLIENT_SECRET}",
            "--dev-token",
            DEV_TOKEN,
        ]
    )
    started.append(proc)
    dev = Devserver(f"http://127.0.0.1:{port}")
    proc.wait_ready(dev.base + "/_dev/stats")
    return dev


@dataclass(frozen=True)
class Devserver:
    base: str

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    def faults(self, **plan: Any) -> None:
        httpx.post(
            self.base + "/_dev/faults", json=plan, headers=DEV_HEADERS, timeout=5
        ).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(self.base + "/_dev/faults", headers=DEV_HEADERS, timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(self.base + "/_dev/reset", headers=DEV_HEADERS, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(self.base + "/_dev/stats", headers=DEV_HEADERS, timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def astats(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get(self.base + "/_dev/stats", headers=DEV_HEADERS)
        data: dict[str, Any] = response.json()
        return data

    def user_token(self, username: str = "demo") -> dict[str, Any]:
        """A customer's access token, as the implicit sign-in at the bank issues it."""
        response = httpx.post(
            f"{self.base}/_dev/users/{username}/tokens",
            json={"client_id": CLIENT_ID},
            headers=DEV_HEADERS,
            timeout=5,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        data["iss"] = self.issuer
        return data

    def client_token(self) -> dict[str, Any]:
        response = httpx.post(
            self.token_url,
            data={"grant_type": "client_credentials", "scope": "corp"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=5,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def corpauth_env(self, **extra: str) -> dict[str, str]:
        return {
            "CORPAUTH_CLIENT_ID": CLIENT_ID,
            "CORPAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "CORPAUTH_ISSUER": self.issuer,
            "CORPAUTH_API_BASE_URL": self.api,
            "CORPAUTH_SESSION_SECRET": SESSION_SECRET,
            "CORPAUTH_DEVELOPMENT": "true",
            **extra,
        }


def relayed_callback(login: httpx.Response, token: Mapping[str, Any]) -> dict[str, str]:
    """The form the fragment relay page POSTs to ``/auth/callback`` after ``/auth/login``.

    ``token`` is a customer's token from the devserver (``Devserver.user_token``); the
    state comes from the login redirect.
    """
    if login.status_code != 303:
        raise RuntimeError(f"/auth/login answered {login.status_code}")
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    form = {
        "access_token": str(token["access_token"]),
        "token_type": "Bearer",
        "expires_in": str(token["expires_in"]),
        "state": state,
        "corpauth_relay": "fragment",
    }
    if "iss" in token:
        form["iss"] = str(token["iss"])
    return form


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --- load generation for throughput (a separate process) -----------------------------


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class Load:
    """One load-generator run: wall-clock rate and the server's own CPU time."""

    requests: int
    seconds: float
    server_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu_second(self) -> float:
        """Requests per second of server CPU: what one dedicated core would sustain.

        Unlike the wall-clock rate it does not move when other processes on a shared
        machine take the core for a while, so ratios are computed from it.
        """
        return self.requests / self.server_cpu if self.server_cpu else math.nan


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def throughput(
    url: str,
    *,
    server_pid: int,
    seconds: float,
    connections: int = 16,
    headers: Mapping[str, str] | None = None,
) -> Load:
    """Load ``url`` from a separate process for ``seconds``.

    wrk (one thread) when installed, else ``bench/loadgen.py`` (asyncio, raw HTTP/1.1
    keep-alive). Non-2xx answers make the run fail: a broken endpoint must not look fast.
    """
    header_args: list[str] = []
    for name, value in (headers or {}).items():
        header_args += ["-H", f"{name}: {value}"]
    if wrk_available():
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", *header_args]
    else:
        cmd = [
            sys.executable,
            str(BENCH / "loadgen.py"),
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
            *header_args,
        ]
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    )
    cpu = cpu_seconds(server_pid) - cpu_before
    text = out.stdout
    if "Non-2xx or 3xx responses" in text or "Socket errors" in text:
        raise RuntimeError(f"load generator saw errors for {url}:\n{text}")
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if match is None:
        raise RuntimeError(f"cannot parse load generator output:\n{text}\n{out.stderr}")
    elapsed = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return Load(requests=int(match.group(1)), seconds=elapsed, server_cpu=cpu)


def alternate(variants: Mapping[str, Callable[[], Load]], *, rounds: int) -> dict[str, list[Load]]:
    """Run every variant once per round, rotating the order, so drift hits all alike."""
    names = list(variants)
    results: dict[str, list[Load]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            results[name].append(variants[name]())
    return results


# --- in-process helpers ----------------------------------------------------------------


class LoopStallMonitor:
    """A task that sleeps 1 ms in a loop and records how late it wakes up (max overshoot)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.max_stall = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            late = time.perf_counter() - start - self.interval
            if late > self.max_stall:
                self.max_stall = late

    async def __aenter__(self) -> LoopStallMonitor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def idle_stall(seconds: float) -> float:
    """The loop-stall noise floor: the monitor alone for ``seconds``."""
    async with LoopStallMonitor() as monitor:
        await asyncio.sleep(seconds)
    return monitor.max_stall


@dataclass
class Sample:
    scheduled: float
    end: float
    ok: bool

    @property
    def latency(self) -> float:
        return self.end - self.scheduled


async def open_loop(
    call: Callable[[], Awaitable[bool]],
    *,
    rate: float,
    seconds: float,
    at: Mapping[float, Callable[[], Coroutine[Any, Any, None]]] | None = None,
) -> list[Sample]:
    """Start ``call`` ``rate`` times a second for ``seconds`` (open loop).

    Latency counts from the scheduled start, so a stalled loop or a request that waits
    shows up in full (no coordinated omission). ``at`` runs actions at given offsets.
    """
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()

    async def one(scheduled: float) -> None:
        try:
            ok = await call()
        except Exception:
            ok = False
        samples.append(Sample(scheduled, time.perf_counter(), ok))

    actions = sorted((at or {}).items())
    n = int(rate * seconds)
    for i in range(n):
        scheduled = t0 + i / rate
        while actions and t0 + actions[0][0] <= scheduled:
            _, action = actions.pop(0)
            tasks.append(loop.create_task(action()))
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(scheduled)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples
