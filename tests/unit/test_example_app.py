"""The example app's own helpers: public URL from host and port, formatting, languages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from example_app import pages
from example_app.__main__ import build_parser, public_url


@pytest.mark.parametrize(
    ("host", "port", "explicit", "expected"),
    [
        ("127.0.0.1", 8011, None, "http://127.0.0.1:8011"),
        ("0.0.0.0", 8012, None, "http://127.0.0.1:8012"),
        ("localhost", 9000, None, "http://localhost:9000"),
        ("::1", 8000, None, "http://[::1]:8000"),
        ("0.0.0.0", 8000, "https://treasury.example.test/", "https://treasury.example.test"),
    ],
)
def test_public_url_follows_host_and_port(
    host: str, port: int, explicit: str | None, expected: str
) -> None:
    assert public_url(host, port, explicit) == expected


def test_port_and_host_from_the_command_line_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "8011")
    monkeypatch.delenv("EXAMPLE_PUBLIC_URL", raising=False)
    args = build_parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8011)
    args = build_parser().parse_args(["--port", "8022", "--host", "localhost"])
    assert (args.host, args.port) == ("localhost", 8022)


def test_amounts_have_separators_in_each_language() -> None:
    assert pages.format_amount("125400.50", "en") == "125,400.50"
    assert pages.format_amount(Decimal("1234567.5"), "ka") == "1\u00a0234\u00a0567,50"
    assert pages.format_amount("not a number", "en") == "not a number"


def test_links_keep_the_language_and_values_are_escaped() -> None:
    assert pages.link("/accounts", "ka") == "/accounts?lang=ka"
    assert pages.link("/accounts", "en") == "/accounts"
    assert pages.sign_in_url("ka") == "/auth/login?lang=ka&next=%2F%3Flang%3Dka"
    assert pages.sign_out_action("ka") == "/auth/logout?next=%2Fsigned-out%3Flang%3Dka"
    row = pages.account_rows([{"iban": "<b>", "holder": "A&B", "currency": "GEL"}], "en")
    assert "<b>" not in row and "&lt;b&gt;" in row and "A&amp;B" in row
    page = pages.layout("en", "<title>", "", user_name="<script>")
    assert "<script>" not in page.replace("<style>", "")


def test_every_text_exists_in_both_languages() -> None:
    assert set(pages.TEXT["en"]) == set(pages.TEXT["ka"])
