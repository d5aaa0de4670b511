"""The example app as users run it: a real uvicorn process with the development server."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.processes import free_port, running

pytestmark = pytest.mark.e2e


def test_example_app_shows_accounts_out_of_the_box() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", "uvicorn", "example_app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with running(args, ready_url=base + "/", env={"EXAMPLE_PUBLIC_URL": base}):
        response = httpx.get(base + "/api/accounts", timeout=10)
        assert response.status_code == 200
        assert "GE28BG0000000101904917" in response.text
        page = httpx.get(base + "/accounts", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 303
        assert page.headers["location"] == base + "/auth/login?next=%2Faccounts"
        stats = httpx.get(base + "/idp/_dev/stats", timeout=10).json()
        assert stats["token_requests"] == 1


def test_example_app_talks_to_a_separate_keycloak() -> None:
    idp_port, app_port = free_port(), free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    base = f"http://127.0.0.1:{app_port}"
    devserver = [
        "-m",
        "fastapi_corpauth.devserver",
        "--port",
        str(idp_port),
        "--flavour",
        "legacy",
        "--client",
        "real-app:Real0Secret",
    ]
    env = {
        "CORPAUTH_CLIENT_ID": "real-app",
        "CORPAUTH_CLIENT_SECRET": "Real0Secret",
        "CORPAUTH_ISSUER": f"{idp}/realms/bog",
        "CORPAUTH_API_BASE_URL": f"{idp}/api",
        "CORPAUTH_SESSION_SECRET": "example-session-key-0123456789",
    }
    app = ["-m", "uvicorn", "example_app.main:app", "--port", str(app_port)]
    with (
        running(devserver, ready_url=idp + "/_dev/stats"),
        running(app, ready_url=base + "/", env=env),
    ):
        response = httpx.get(base + "/api/accounts", timeout=10)
        assert response.status_code == 200
        assert "GE28BG0000000101904917" in response.text
        assert httpx.get(base + "/idp/_dev/stats").status_code == 404  # no embedded server
        assert httpx.get(idp + "/_dev/stats").json()["token_requests"] == 1
