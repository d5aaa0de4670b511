"""Sign in through the development server in headless Chromium, as a customer would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.browser import browser, navigation_history
from tests.e2e.processes import free_port, running

pytestmark = pytest.mark.e2e

FLOWS = {
    "fragment": {},
    "form_post": {"CORPAUTH_RESPONSE_MODE": "form_post"},
    "code": {"CORPAUTH_RESPONSE_TYPE": "code"},
}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as instance:
        yield instance


@contextmanager
def example_app(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", "uvicorn", "example_app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with running(args, ready_url=base + "/", env={"EXAMPLE_PUBLIC_URL": base, **env}):
        yield base


def sign_in(page: Any, base: str, *, button: str = "#sign-in") -> None:
    page.goto(base + "/")
    page.click(button)
    page.wait_for_selector("#username")
    page.fill("#username", "demo")
    page.fill("#password", "demo")
    page.click("#kc-login")
    page.wait_for_selector("#who")


def assert_no_token_left(page: Any) -> None:
    for url in [page.url, *navigation_history(page)]:
        for marker in ("access_token", "?code=", "&code=", "#"):
            assert marker not in url, url


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_sign_in_and_out(chromium: Any, flow: str) -> None:
    with example_app(FLOWS[flow]) as base:
        context = chromium.new_context()
        page = context.new_page()
        sign_in(page, base)
        assert page.url == base + "/"
        assert page.text_content("#who")
        assert_no_token_left(page)
        cookies = {c["name"]: c for c in context.cookies(base)}
        session = cookies["corpauth_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Lax"
        assert "." in session["value"]  # a signed id, not a token

        page.click("#accounts")
        page.wait_for_selector("#accounts-table")
        assert "GE28BG0000000101904917" in page.content()

        page.goto(base + "/")
        page.click("#sign-out")
        page.wait_for_selector("#kc-logout")  # the bank asks to confirm ending its session
        page.click("#kc-logout")
        page.wait_for_selector("#sign-in")
        page.goto(base + "/accounts")
        page.wait_for_selector("#username")  # signed out: sent back to the bank's sign-in
        context.close()


def test_sign_in_in_georgian(chromium: Any) -> None:
    with example_app({}) as base:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(base + "/")
        page.click("#sign-in-ka")
        page.wait_for_selector("#username")
        assert page.get_attribute("html", "lang") == "ka"
        assert "kc_locale=ka" in page.url
        assert "შესვლა" in page.content()
        page.fill("#username", "demo")
        page.fill("#password", "demo")
        page.click("#kc-login")
        page.wait_for_selector("#who")
        assert_no_token_left(page)
        context.close()


def test_cancel_at_the_bank_gives_a_clear_page(chromium: Any) -> None:
    with example_app({}) as base:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(base + "/")
        page.click("#sign-in")
        page.wait_for_selector("#kc-cancel")
        page.click("#kc-cancel")
        page.wait_for_selector("#code")
        assert page.text_content("#code") == "authorization_denied"
        assert "cancelled" in (page.text_content("#message") or "")
        context.close()
