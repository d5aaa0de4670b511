"""Benchmarks of fastapi_corpauth, each against a baseline measured in the same run.

    python bench/run.py [--quick] [--only 1,2,...]

Measures: 1 per-request cost in process, 2 an outbound call's cost, 3 herd,
4 rollover, 5 revocation, 6 workers with Redis, 7 Authlib and httpx-auth side by side
(with 2-5), 8 memory, 9 the sign-in path, 10 Redis modes (one node, cluster, Sentinel)
side by side, 11 per-request cost through uvicorn. Ends with one Markdown table
(measure, figure, baseline, ratio with its spread, target, result).
Not part of the test suite; ``scripts/bench`` installs what it needs and runs it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    anchors,
    herd,
    memory,
    outbound,
    per_request,
    redis_modes,
    revocation,
    rollover,
    through_uvicorn,
    verification,
    workers,
)
from bench.common import Profile, Report, markdown_table, wrk_available

MEASURES = {
    1: "per-request cost, in process",
    2: "an outbound call's cost",
    3: "herd",
    4: "rollover",
    5: "revocation",
    6: "workers with Redis",
    7: "Authlib and httpx-auth side by side",
    8: "memory",
    9: "the sign-in path",
    10: "Redis modes side by side",
    11: "per-request cost through uvicorn",
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load generator: "
        f"{'wrk' if wrk_available() else 'bench/loadgen.py'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 2 minutes)")
    parser.add_argument(
        "--only", default="", help="comma-separated measure numbers, e.g. 1,3 (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        only = {int(x) for x in args.only.split(",") if x.strip()} or set(MEASURES)
    except ValueError:
        parser.error("--only takes measure numbers such as 1,3")
    if not only <= set(MEASURES):
        parser.error(f"measures are {', '.join(map(str, MEASURES))}")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    profile = Profile(quick=args.quick)
    report = Report()
    print(f"fastapi-corpauth benchmarks ({'quick' if args.quick else 'full'} run)")
    print(f"machine: {machine()}\n", flush=True)
    found = anchors.available() if 7 in only else []
    started = time.perf_counter()
    steps: list[tuple[int, Callable[[], None]]] = [
        (1, lambda: per_request.run(profile, report)),
        (
            2,
            lambda: outbound.run(profile, report, plugin_rows=2 in only, with_anchors=7 in only),
        ),
        (3, lambda: herd.run(profile, report, plugin_rows=3 in only, anchors=found)),
        (4, lambda: rollover.run(profile, report, plugin_rows=4 in only, anchors=found)),
        (5, lambda: revocation.run(profile, report, plugin_rows=5 in only, anchors=found)),
        (6, lambda: workers.run(profile, report)),
        (8, lambda: memory.run(profile, report)),
        (9, lambda: verification.run(profile, report)),
        (10, lambda: redis_modes.run(profile, report)),
        (11, lambda: through_uvicorn.run(profile, report)),
    ]
    for n, step in steps:
        if n not in only and not (n in (2, 3, 4, 5) and 7 in only):
            continue
        label = MEASURES[n] + (" (+ 7)" if found and n in (2, 3, 4, 5) else "")
        print(f"[{n}] {label}", flush=True)
        t0 = time.perf_counter()
        step()
        print(f"    ({time.perf_counter() - t0:.0f} s)\n", flush=True)
    print(f"Total {time.perf_counter() - started:.0f} s. Machine: {machine()}\n")
    print(markdown_table(report.rows))
    misses = [r for r in report.rows if r.result == "MISS"]
    print(f"\n{len(misses)} target(s) missed." if misses else "\nEvery target met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
