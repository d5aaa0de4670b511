"""Headless Chromium (Debian's package) driven by Playwright, for end-to-end sign-in tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; ./scripts/test installs Debian's package")
        pytest.skip("chromium is not installed (./scripts/test installs it)")
    return path


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


def navigation_history(page: Any) -> list[str]:
    """Every URL in the tab's session history, read through the DevTools protocol."""
    session = page.context.new_cdp_session(page)
    history = session.send("Page.getNavigationHistory")
    return [entry["url"] for entry in history["entries"]]
