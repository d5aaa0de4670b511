"""The example app as users run it: real processes, and never a public development bank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import DEV_HEADERS, DEV_TOKEN, ROOT, free_port, running

pytestmark = pytest.mark.e2e


def test_development_mode_out_of_the_box() -> None:
    """``./scripts/run-example``: the embedded development bank, on this machine."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", "example_app", "--port", str(port)]
    env = {"EXAMPLE_PUBLIC_URL": "", "EXAMPLE_DEV_TOKEN": DEV_TOKEN}
    with running(args, ready_url=base + "/", env=env, log_stdout=True) as log:
        page = httpx.get(base + "/accounts", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 303
        assert page.headers["location"] == base + "/auth/login?next=%2Faccounts"
        # Bank data only for a signed-in customer, also as JSON.
        assert httpx.get(base + "/api/accounts", timeout=10).status_code == 401
        # The development bank's controls need the token printed at start-up.
        assert httpx.get(base + "/idp/_dev/stats", timeout=10).status_code == 404
        stats = httpx.get(base + "/idp/_dev/stats", headers=DEV_HEADERS, timeout=10)
        assert stats.status_code == 200
        printed = log.read_text()
        assert f"X-Dev-Token: {DEV_TOKEN}" in printed


def test_development_mode_refuses_a_public_address() -> None:
    for args in (["--host", "0.0.0.0"], ["--public-url", "https://shop.example"]):
        done = subprocess.run(
            [sys.executable, "-m", "example_app", "--port", str(free_port()), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        )
        assert done.returncode != 0
        assert "this machine only" in done.stderr, done.stderr


def test_a_dotenv_naming_a_real_issuer_means_no_development_bank(tmp_path: Path) -> None:
    """Configured through ``.env`` (as the docs invite), the app is not in development."""
    idp_port, app_port = free_port(), free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    base = f"http://127.0.0.1:{app_port}"
    devserver = ["-m", "fastapi_corpauth.devserver", "--port", str(idp_port)]
    devserver += ["--flavour", "legacy", "--client", "real-app:Real0Secret"]
    devserver += ["--dev-token", DEV_TOKEN]
    (tmp_path / ".env").write_text(
        "\n".join(
            [
                "CORPAUTH_CLIENT_ID=real-app",
                "CORPAUTH_CLIENT_SECRET=Real0Secret",
                f"CORPAUTH_ISSUER={idp}/realms/bog",
                f"CORPAUTH_API_BASE_URL={idp}/api",
                "CORPAUTH_SESSION_SECRET=example-session-key-0123456789",
                f"CORPAUTH_REDIRECT_URI={base}/auth/callback",
                "",
            ]
        )
    )
    app = ["-m", "uvicorn", "example_app.main:app", "--port", str(app_port)]
    with (
        running(devserver, ready_url=idp + "/_dev/stats"),
        running(app, ready_url=base + "/", env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path),
    ):
        assert (
            httpx.get(base + "/idp/realms/bog/.well-known/openid-configuration").status_code == 404
        )
        assert httpx.get(base + "/idp/_dev/stats", headers=DEV_HEADERS).status_code == 404
        assert httpx.get(base + "/api/accounts", timeout=10).status_code == 401
        login = httpx.get(base + "/auth/login", timeout=10)
        assert login.headers["location"].startswith(idp + "/realms/bog/")
        assert (
            f"redirect_uri={base}/auth/callback".replace(":", "%3A").replace("/", "%2F")
            in (login.headers["location"])
        )


def test_without_settings_and_without_development_it_refuses_to_start() -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "example_app.main:app", "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert done.returncode != 0
    assert "CORPAUTH_CLIENT_ID is required" in done.stderr
