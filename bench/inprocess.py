"""In-process measurement: ASGI calls without a server, CPU time per call, and verdicts that
only come from measures whose spread is on one side of the target.

The variants of a comparison are called in turn, call after call (the order rotating),
so that whatever else the machine does falls on all of them alike; each call is timed
on the process's CPU clock. A variant's figure for a round is the median of its ``n``
calls, less what reading the clock costs: the median leaves out the calls that a
garbage collection, an interrupt or a neighbour on a shared machine happened to hit,
which on a shared VM move a batch's mean by 30 %. Ratios are taken per round (baseline
CPU / variant CPU, so 1.00 means "costs the same" and 0.95 "costs 5 % more"); the spread
is the lowest, median and highest of those per-round ratios. A verdict is PASS when every
round meets the target, MISS when none does, and "inconclusive" otherwise: noise, not the
code, would decide it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .common import Report

Operation = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        return next((v.decode() for k, v in self.headers if k.lower() == key), None)

    def cookies(self) -> dict[str, str]:
        """The cookies the answer sets (name: value; deleted ones as "")."""
        found = {}
        for k, v in self.headers:
            if k.lower() == b"set-cookie":
                name, _, rest = v.decode().partition("=")
                found[name] = rest.split(";", 1)[0].strip('"')
        return found


async def asgi_request(
    app: Any,
    path: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    method: str = "GET",
    query: bytes = b"",
    body: bytes = b"",
    host: bytes = b"app.test",
) -> Answer:
    """One request straight into ``app`` (no client, no server, no network)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 50000),
        "server": (host.decode(), 80),
        "state": {},
    }
    status = 0
    answer_headers: list[tuple[bytes, bytes]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers.extend(message.get("headers", ()))

    await app(scope, receive, send)
    return Answer(status, answer_headers)


async def asgi_call(app: Any, path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> int:
    """A GET straight into ``app``; only the status."""
    return (await asgi_request(app, path, headers)).status


async def cpu_per_call(operation: Operation, n: int) -> float:
    """Microseconds of this process's CPU per call, over ``n`` calls after a collection."""
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        await operation()
    return (time.process_time() - started) / n * 1e6


def timer_overhead() -> float:
    """Seconds that reading the CPU clock twice adds to one timed call (the median)."""
    clock = time.process_time
    samples = []
    for _ in range(2001):
        started = clock()
        samples.append(clock() - started)
    return statistics.median(samples)


async def alternate(
    operations: Mapping[str, Operation], *, rounds: int, n: int
) -> dict[str, list[float]]:
    """CPU µs per call of each operation, one figure per round: the median of ``n``
    timed calls, each operation called in turn (the order rotating every time)."""
    names = list(operations)
    calls = [operations[name] for name in names]
    for call in calls:  # warm every path (imports, caches, first-call costs)
        for _ in range(max(10, n // 10)):
            await call()
    overhead = timer_overhead()
    clock = time.process_time
    results: dict[str, list[float]] = {name: [] for name in names}
    count = len(calls)
    for _ in range(rounds):
        samples: list[list[float]] = [[] for _ in calls]
        gc.collect()
        for i in range(n):
            for j in range(count):
                k = (i + j) % count
                started = clock()
                await calls[k]()
                samples[k].append(clock() - started)
        for k, name in enumerate(names):
            results[name].append((statistics.median(samples[k]) - overhead) * 1e6)
    return results


@dataclass(frozen=True)
class Spread:
    """Per-round ratios of baseline CPU to variant CPU (higher is cheaper)."""

    ratios: tuple[float, ...]

    @classmethod
    def of(cls, variant: Sequence[float], baseline: Sequence[float]) -> Spread:
        return cls(tuple(b / v for v, b in zip(variant, baseline, strict=True)))

    @property
    def low(self) -> float:
        return min(self.ratios)

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def high(self) -> float:
        return max(self.ratios)

    def text(self) -> str:
        return f"{self.median:.3f} ({self.low:.3f}–{self.high:.3f})"

    def verdict(self, target: float) -> bool | str:
        """True (every round meets ``target``), False (none does) or "inconclusive"."""
        if self.low >= target:
            return True
        if self.high < target:
            return False
        return "inconclusive"


def micros(values: Sequence[float]) -> str:
    """min/median/max of CPU µs per call."""
    return f"{statistics.median(values):.1f} µs ({min(values):.1f}–{max(values):.1f})"


def add_ratio(
    report: Report,
    measure: str,
    results: Mapping[str, Sequence[float]],
    variant: str,
    baseline: str,
    target: float | None,
    *,
    target_text: str | None = None,
    reference: bool = False,
) -> Spread:
    """A row: the variant's and baseline's CPU per call, their ratio with its spread, and
    the verdict against ``target`` (None: an information row)."""
    spread = Spread.of(results[variant], results[baseline])
    report.add(
        measure,
        micros(results[variant]),
        f"{baseline}: {micros(results[baseline])}",
        spread.text(),
        target_text or (f"≥ {target:.2f} in every round" if target is not None else "–"),
        None if target is None else spread.verdict(target),
        reference=reference,
    )
    return spread
