"""Sessions that outlive their tokens, with real processes, Redis and headless Chromium.

A development server issues tokens that live 3 seconds; example-app processes point at
it. The code flow stays signed in across several lifetimes with one refresh per
lifetime, however many tabs and worker processes ask; the implicit flow renews through
the bank without the password form; an SSO session ended at the bank leads to the
sign-in form; Back after signing out shows no customer data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest

from tests.e2e.browser import browser
from tests.e2e.processes import DEV_HEADERS, DEV_TOKEN, free_port, running
from tests.support import page_form

pytestmark = pytest.mark.e2e

LIFETIME = 3.0
SESSION_SECRET = "lasting-sessions-e2e-secret-0123456789"


@contextmanager
def devserver() -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", "fastapi_corpauth.devserver", "--port", str(port), "--dev-token", DEV_TOKEN]
    args += ["--token-lifetime", str(LIFETIME), "--implicit-token-lifetime", str(LIFETIME)]
    with running(args, ready_url=base + "/_dev/stats"):
        yield base


@contextmanager
def example_app(idp: str, **settings: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "CORPAUTH_CLIENT_ID": "corp-app",
        "CORPAUTH_CLIENT_SECRET": "dev-secret",
        "CORPAUTH_ISSUER": f"{idp}/realms/bog",
        "CORPAUTH_API_BASE_URL": f"{idp}/api",
        "CORPAUTH_SESSION_SECRET": SESSION_SECRET,
        "CORPAUTH_LOGIN_REDIRECT": "true",
        "CORPAUTH_LOGOUT_AT_PROVIDER": "true",
        "CORPAUTH_REDIS_TIMEOUT": "2.0",
        "CORPAUTH_REDIRECT_URI": f"{base}/auth/callback",
        **{f"CORPAUTH_{name.upper()}": value for name, value in settings.items()},
    }
    args = ["-m", "uvicorn", "example_app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with running([*args, "--no-access-log"], ready_url=base + "/", env=env):
        yield base


def stats(idp: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(idp + "/_dev/stats", headers=DEV_HEADERS, timeout=5).json()
    return answer


def wait_past_token_end(since: float) -> None:
    """Sleep until a token issued at ``since`` is near its end (stale), whatever the load."""
    time.sleep(max(0.0, since + LIFETIME - time.monotonic()))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as instance:
        yield instance


def sign_in_with_the_form(page: Any, base: str) -> None:
    page.goto(base + "/")
    page.click("#sign-in")
    page.wait_for_selector("#username")
    page.fill("#username", "demo")
    page.fill("#password", "demo")
    page.click("#kc-login")
    page.wait_for_selector("#who")


def test_code_flow_two_tabs_two_workers_one_refresh_per_lifetime(
    chromium: Any, redis_url: str
) -> None:
    code = {"response_type": "code", "scope": "openid corp", "redis_url": redis_url}
    with devserver() as idp, example_app(idp, **code) as first, example_app(idp, **code) as second:
        context = chromium.new_context()
        tabs = [context.new_page(), context.new_page()]
        sign_in_with_the_form(tabs[0], first)
        signed_in_at = time.monotonic()
        for lifetime in range(1, 4):
            wait_past_token_end(signed_in_at + (lifetime - 1) * LIFETIME)
            # Both tabs, each on another worker process (cookies are per host, not port).
            for tab, base in zip(tabs, (first, second), strict=True):
                tab.goto(base + "/my-accounts")
                assert tab.is_visible("#my-accounts-table"), tab.content()
            assert stats(idp)["refreshes"] == lifetime
        assert stats(idp)["logins"] == 1
        context.close()


def test_concurrent_requests_on_four_workers_refresh_once(redis_url: str) -> None:
    code = {"response_type": "code", "scope": "openid corp", "redis_url": redis_url}
    with devserver() as idp, ExitStack() as stack:
        bases = [stack.enter_context(example_app(idp, **code)) for _ in range(4)]
        cookie = sign_in_over_http(bases[0])
        issued = time.monotonic()
        wait_past_token_end(issued)

        async def burst() -> list[int]:
            header = {"Cookie": f"corpauth_session={cookie['corpauth_session']}"}
            async with httpx.AsyncClient(timeout=15, headers=header) as client:
                answers = await asyncio.gather(
                    *(client.get(bases[n % 4] + "/my-accounts") for n in range(40))
                )
            return [a.status_code for a in answers]

        # On a thread of its own: the browser tests' driver keeps an event loop here.
        with ThreadPoolExecutor(1) as thread:
            statuses = thread.submit(asyncio.run, burst()).result()
        assert set(statuses) == {200}
        assert stats(idp)["refreshes"] == 1


def sign_in_over_http(base: str) -> dict[str, str]:
    """A code-flow sign-in through the devserver's form, as a browser would do it."""
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        login = client.get(base + "/auth/login?next=/")
        form_page = client.get(login.headers["location"])
        action, inputs = page_form(form_page.text)
        form = {"session_code": dict(inputs)["session_code"], "username": "demo"}
        form |= {"password": "demo", "login": "login"}
        answer = client.post(urljoin(login.headers["location"], action), data=form)
        callback = answer.headers["location"]
        assert "code" in dict(parse_qsl(urlsplit(callback).query))
        done = client.get(callback)
        assert done.status_code == 303, done.text
        return {"corpauth_session": client.cookies["corpauth_session"]}


def test_implicit_page_view_after_expiry_renews_without_the_form(chromium: Any) -> None:
    with devserver() as idp, example_app(idp) as base:
        context = chromium.new_context()
        page = context.new_page()
        sign_in_with_the_form(page, base)
        visited: list[str] = []
        page.on("request", lambda request: visited.append(request.url))
        time.sleep(LIFETIME + 0.5)  # the token has expired
        page.goto(base + "/my-accounts")
        page.wait_for_selector("#my-accounts-table")
        assert stats(idp)["logins"] == 1  # no password entered again
        assert any("prompt=none" in url for url in visited)
        assert not any("login-actions" in url for url in visited)
        assert page.url == base + "/my-accounts"
        context.close()


def test_an_sso_session_ended_at_the_bank_leads_to_the_sign_in_form(chromium: Any) -> None:
    with devserver() as idp, example_app(idp) as base:
        context = chromium.new_context()
        page = context.new_page()
        sign_in_with_the_form(page, base)
        httpx.post(idp + "/_dev/sso/end", headers=DEV_HEADERS, timeout=5).raise_for_status()
        time.sleep(LIFETIME + 0.5)
        page.goto(base + "/accounts")
        page.wait_for_selector("#username")  # the bank asks for the password again
        page.fill("#username", "demo")
        page.fill("#password", "demo")
        page.click("#kc-login")
        page.wait_for_selector("#accounts-table")  # and comes back to the page asked for
        context.close()


def test_back_after_signing_out_shows_no_customer_data(chromium: Any) -> None:
    with devserver() as idp, example_app(idp) as base:
        context = chromium.new_context()
        page = context.new_page()
        sign_in_with_the_form(page, base)
        page.goto(base + "/my-accounts")
        page.wait_for_selector("#my-accounts-table")
        page.click("#sign-out")
        # An implicit sign-in has no ID token, so the bank asks once.
        page.wait_for_selector("#kc-logout")
        page.click("#kc-logout")
        page.wait_for_selector("#signed-out")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        for _ in range(4):
            page.go_back()
            page.wait_for_load_state()
            assert "my-accounts-table" not in page.content()
            assert "GE28BG" not in page.content()
        # The customer's pages were asked for again (no-store), and refused.
        assert any(url.startswith(base + "/my-accounts") for url in requests)
        context.close()
