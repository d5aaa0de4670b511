"""Real server processes for end-to-end tests: started on free loopback ports, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: The token the tests' development servers guard their /_dev controls with.
DEV_TOKEN = "e2e-dev-controls-token"
DEV_HEADERS = {"X-Dev-Token": DEV_TOKEN}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start within {timeout}s")


@contextmanager
def running(
    args: Sequence[str],
    *,
    ready_url: str,
    env: Mapping[str, str] | None = None,
    log_stdout: bool = False,
    cwd: Path = ROOT,
) -> Iterator[Path]:
    """Run ``python args...`` from the project root (or ``cwd``) until the block ends.

    ``CORPAUTH_*`` variables of the test run are not inherited, only those in ``env``.
    Yields the path of the process's stderr log (a file, so a chatty server can never
    block on a full pipe), which holds its stdout too with ``log_stdout``; the log is
    removed afterwards.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CORPAUTH_")}
    full_env.update(env or {})
    with tempfile.NamedTemporaryFile(prefix="corpauth-e2e-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=full_env,
            stdout=stderr if log_stdout else subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_until_ready(ready_url, process)
        yield log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log_path.unlink(missing_ok=True)
