"""The documentation site: it builds with ``--strict``, and every code block in it works.

Every fenced ``python`` block of ``docs/`` runs, page by page and in order, against a real
development server started with ``python -m fastapi_corpauth.devserver``, whose printed
``CORPAUTH_*`` lines are the environment, as the quick start tells users to do. A block
titled ``title="main.py"`` is that module (later blocks may ``from main import ...``);
blocks with the same title extend it. Each app a page builds is then exercised with
httpx over ASGI, with its lifespan, including a real sign-in where the page is about one;
test functions a page defines (``test_*.py``) run with the plugin's fixtures.

A block that must not run is preceded by ``<!-- not run: reason -->``; that marker is
rare and always gives its reason. Shell blocks that run the development server or the
example app are parsed by their real argument parsers, and every ``CORPAUTH_*`` name in
the docs must be a real setting.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from example_app.__main__ import build_parser as example_parser
from fastapi_corpauth import CorpAuthSettings
from fastapi_corpauth.devserver.__main__ import build_parser as devserver_parser
from fastapi_corpauth.testing import DevServer
from tests.e2e.processes import DEV_TOKEN, ROOT, free_port, running

DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
#: The README's example runs too, like a page of the docs.
README = "README.md"
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n(?P<code>.*?)^(?P=indent)```[ ]*$",
    re.MULTILINE | re.DOTALL,
)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]+?) -->\s*$")
#: At most this many python blocks in the whole site may be marked as not run.
MAX_NOT_RUN = 2


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    code: str
    not_run: str | None


def source(page: str) -> Path:
    return ROOT / README if page == README else DOCS / page


def blocks(page: str) -> list[Block]:
    text = source(page).read_text()
    found = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        code = "".join(line[indent:] for line in match["code"].splitlines(keepends=True))
        title = re.search(r'title="([^"]+)"', match["attrs"])
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 2,
                lang=match["lang"],
                title=title.group(1) if title else None,
                code=code,
                not_run=marker["reason"] if marker else None,
            )
        )
    return found


PYTHON_PAGES = [p for p in [*PAGES, README] if any(b.lang in ("python", "py") for b in blocks(p))]


# --- the development server the snippets talk to ------------------------------------------


@pytest.fixture(scope="module")
def devserver_environ() -> Iterator[dict[str, str]]:
    """A devserver process; the ``CORPAUTH_*`` lines it printed, as an environment."""
    port = free_port()
    args = ["-m", "fastapi_corpauth.devserver", "--port", str(port), "--dev-token", DEV_TOKEN]
    url = f"http://127.0.0.1:{port}"
    with running(args, ready_url=url + "/_dev/stats", log_stdout=True) as log:
        lines = [line for line in log.read_text().splitlines() if line.startswith("CORPAUTH_")]
        environ = dict(line.split("=", 1) for line in lines)
        assert environ["CORPAUTH_ISSUER"] == url + "/realms/bog"
        yield environ


@pytest.fixture
def snippet_environment(
    devserver_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    for name in list(os.environ):
        if name.upper().startswith("CORPAUTH_"):
            monkeypatch.delenv(name)
    for name, value in devserver_environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the project's
    return devserver_environ


# --- running a page ------------------------------------------------------------------------


class Page:
    """The modules a page's blocks built, by file name (``None``: untitled blocks)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.modules: dict[str | None, types.ModuleType] = {}

    def run(self, block: Block) -> None:
        module_name = (block.title or "snippet").removesuffix(".py").replace("/", ".")
        module = self.modules.get(block.title)
        if module is None:
            assert module_name not in sys.modules or module_name == "snippet", (
                f"{block.page}:{block.line}: title {block.title!r} shadows a module"
            )
            module = types.ModuleType(module_name)
            module.__file__ = f"{source(block.page)}:{block.line}"
            self.modules[block.title] = module
            sys.modules[module_name] = module
        code = compile(block.code, f"{block.page}:{block.line}", "exec")
        exec(code, module.__dict__)  # noqa: S102 - the docs' own code, as users run it

    def apps(self) -> dict[str, FastAPI]:
        return {
            (title or "snippet"): module.app
            for title, module in self.modules.items()
            if isinstance(getattr(module, "app", None), FastAPI)
        }

    def tests(self) -> list[Callable[..., Any]]:
        return [
            function
            for title, module in self.modules.items()
            if title and Path(title).name.startswith("test_")
            for name, function in vars(module).items()
            if name.startswith("test_") and inspect.iscoroutinefunction(function)
        ]

    def close(self) -> None:
        for module in self.modules.values():
            sys.modules.pop(module.__name__, None)


@asynccontextmanager
async def browser(app: FastAPI, environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app`` (over ASGI, lifespan running) that reaches the devserver process
    over real HTTP, keeping cookies for both like a browser."""
    devserver = environ["CORPAUTH_ISSUER"].split("/realms/")[0]
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            base_url="http://localhost",
            mounts={devserver: httpx.AsyncHTTPTransport(), "all://": httpx.ASGITransport(app)},
            follow_redirects=False,
            timeout=10,
        ) as client:
            yield client


async def sign_in(client: httpx.AsyncClient, **kwargs: Any) -> httpx.Response:
    """The plugin's sign-in helper drives any client that reaches the app and the server."""
    return await DevServer().sign_in(client, **kwargs)


Check = Callable[[Page, dict[str, str]], Awaitable[None]]


async def check_quickstart(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        assert (await client.get("/")).json()["signed_in"] is False
        assert (await client.get("/accounts")).status_code == 401
        landing = await sign_in(client, next="/accounts")
        assert landing.json()["customer"] == "Nino Beridze"
        assert landing.json()["accounts"][0]["iban"] == "GE28BG0000000101904917"
        assert (await client.get("/")).json() == {"signed_in": True, "name": "Nino Beridze"}
        assert (await client.post("/auth/logout")).status_code == 303
        assert (await client.get("/accounts")).status_code == 401


async def check_readme(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        assert (await client.get("/accounts")).status_code == 401
        landing = await sign_in(client, next="/accounts")
        assert landing.json()["customer"] == "Nino Beridze"


async def check_bank_api(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        assert (await client.get("/accounts")).json()["accounts"]  # anonymous: see the warning
        assert (await client.get("/token-length")).json()["length"] > 20
        assert (await client.get("/token-expiry")).json()["scope"]
    async with browser(page.apps()["own_lifespan.py"], environ):
        own = page.modules["own_lifespan.py"]
        assert (await own.corpauth.get_token()).access_token


async def check_sign_in(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        assert "/auth/login?lang=ka" in (await client.get("/")).text
        landing = await sign_in(client, next="/me", lang="ka")
        assert landing.json()["name"] == "Nino Beridze"
        assert "Sign out" in (await client.get("/")).text


async def check_sessions(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        redirect = await client.get("/dashboard", headers={"Accept": "text/html"})
        assert redirect.status_code == 303
        assert redirect.headers["location"].endswith("/auth/login?next=%2Fdashboard")
        assert (await client.get("/dashboard")).status_code == 401  # an API client
        landing = await sign_in(client, next="/dashboard")
        assert "the session lasts at most 480 minutes" in landing.text
        mine = (await client.get("/my-accounts")).json()["accounts"]
        assert {account["holder"] for account in mine} == {"Kartli Logistics LLC"}


async def check_verifying_tokens(page: Page, environ: dict[str, str]) -> None:
    base = environ["CORPAUTH_ISSUER"].split("/realms/")[0]
    async with httpx.AsyncClient() as http:
        customer = await http.post(
            base + "/_dev/users/demo/tokens", json={}, headers={"X-Dev-Token": DEV_TOKEN}
        )
        service = await http.post(
            environ["CORPAUTH_ISSUER"] + "/protocol/openid-connect/token",
            data={"grant_type": "client_credentials"},
            auth=(environ["CORPAUTH_CLIENT_ID"], environ["CORPAUTH_CLIENT_SECRET"]),
        )
    async with browser(page.apps()["main.py"], environ) as client:
        token = customer.json()["access_token"]
        good = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200 and good.json()["name"] == "Nino Beridze"
        for refused in ("forged", service.json()["access_token"]):
            answer = await client.get("/me", headers={"Authorization": f"Bearer {refused}"})
            assert answer.status_code == 401
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        missing = await client.get("/me")
        assert missing.headers["www-authenticate"] == 'Bearer realm="corpauth"'


async def check_errors(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        assert (await client.get("/token-scope")).json()["scope"]
    # Without the lifespan, the handler answers the documented 503.
    app = page.apps()["main.py"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as c:
        response = await c.get("/token-scope")
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "configuration_error"


async def check_devserver(page: Page, environ: dict[str, str]) -> None:
    async with browser(page.apps()["main.py"], environ) as client:
        discovery = await client.get("/idp/realms/bog/.well-known/openid-configuration")
        assert discovery.json()["issuer"] == "http://localhost/idp/realms/bog"
        assert (await client.get("/idp/_dev/stats")).status_code == 404
        token = page.modules["main.py"].dev_token
        answer = await client.get("/idp/_dev/stats", headers={"X-Dev-Token": token})
        assert answer.status_code == 200


CHECKS: dict[str, Check] = {
    README: check_readme,
    "quickstart.md": check_quickstart,
    "bank-api.md": check_bank_api,
    "sign-in.md": check_sign_in,
    "sessions.md": check_sessions,
    "verifying-tokens.md": check_verifying_tokens,
    "errors.md": check_errors,
    "devserver.md": check_devserver,
}


@pytest.mark.anyio
@pytest.mark.parametrize("page_name", PYTHON_PAGES)
async def test_python_blocks_run(
    page_name: str,
    snippet_environment: dict[str, str],
    record_property: Callable[[str, object], None],
) -> None:
    page = Page(page_name)
    try:
        ran = 0
        for block in blocks(page_name):
            if block.lang in ("python", "py") and block.not_run is None:
                page.run(block)
                ran += 1
        record_property("blocks_run", ran)
        apps = page.apps()
        for app in apps.values():  # every app starts, stops and serves its schema
            async with browser(app, snippet_environment) as client:
                assert (await client.get("/openapi.json")).status_code == 200
        tests = page.tests()
        for test in tests:
            await test(
                **{
                    name: DevServer() if name == "corpauth_devserver" else None
                    for name in inspect.signature(test).parameters
                }
            )
        check = CHECKS.get(page_name)
        assert check is not None or tests, f"{page_name}: add a check of what its code does"
        if check is not None:
            await check(page, snippet_environment)
    finally:
        page.close()


def test_every_page_with_python_is_checked() -> None:
    assert set(CHECKS) <= set(PYTHON_PAGES)
    assert "testing.md" in PYTHON_PAGES  # its test functions run as the check


def test_not_run_markers_are_rare_and_give_a_reason() -> None:
    marked = [b for p in [*PAGES, README] for b in blocks(p) if b.not_run is not None]
    assert len(marked) <= MAX_NOT_RUN, [(b.page, b.line) for b in marked]
    python = [b for p in PAGES for b in blocks(p) if b.lang in ("python", "py")]
    assert len(python) >= 12
    assert all(b.lang for p in PAGES for b in blocks(p)), "every block names its language"


def test_command_lines_in_the_docs_parse() -> None:
    parsers = {
        "corpauth-devserver": devserver_parser(),
        "python -m fastapi_corpauth.devserver": devserver_parser(),
        "./scripts/run-example": example_parser(),
    }
    seen = set()
    for page in [*PAGES, README]:
        for block in blocks(page):
            if block.lang not in ("sh", "bash", "console"):
                continue
            for line in block.code.splitlines():
                command = line.split("#", 1)[0].strip()
                for prefix, parser in parsers.items():
                    if command == prefix or command.startswith(prefix + " "):
                        parser.parse_args(shlex.split(command.removeprefix(prefix)))
                        seen.add(prefix)
    assert {"corpauth-devserver", "./scripts/run-example"} <= seen


def test_every_variable_named_in_the_docs_is_a_setting() -> None:
    known = set(CorpAuthSettings.variable_names())
    named = set()
    for path in [*(DOCS / p for p in PAGES), ROOT / "README.md"]:
        named |= set(re.findall(r"CORPAUTH_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    misspelled_on_purpose = {"CORPAUTH_SESION_SECRET"}  # the unknown-variable warning
    assert not named - known - misspelled_on_purpose, sorted(named - known)


def test_site_builds_strict_with_every_setting(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (site / "settings" / "index.html").read_text()
    for variable in CorpAuthSettings.variable_names():
        assert f"<code>{variable}</code>" in reference, variable
    for name, field in CorpAuthSettings.model_fields.items():
        assert field.description, name
    built = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    assert len(built) == len(PAGES)


def test_python_blocks_are_in_ruffs_format() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    for page in PYTHON_PAGES:
        for block in blocks(page):
            if block.lang not in ("python", "py"):
                continue
            formatted = subprocess.run(
                [str(ruff), "format", "--line-length", "100", "-"],
                input=block.code,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert formatted == block.code, f"{page}:{block.line} is not in ruff's format"


def _random_line(line: str) -> bool:
    """A printed line whose value is new at every start (a secret, the dev token)."""
    return "SESSION_SECRET" in line or "X-Dev-Token" in line


def test_the_printed_settings_shown_in_the_docs_are_what_the_devserver_prints() -> None:
    from fastapi_corpauth.devserver.__main__ import banner

    shown = [
        b.code
        for p in PAGES
        for b in blocks(p)
        if b.lang == "text" and b.code.startswith("Development authorization server")
    ]
    assert shown
    printed = banner(devserver_parser().parse_args([]), session_secret="SECRET")
    for text in shown:
        expected = [line for line in printed.splitlines() if not _random_line(line)]
        actual = [line for line in text.splitlines() if not _random_line(line)]
        assert actual == expected[: len(actual)]
        assert len(actual) >= len(expected) - 1


def test_the_error_tree_in_the_docs_is_the_packages() -> None:
    import fastapi_corpauth
    from fastapi_corpauth import _errors

    documented = next(
        b.code for b in blocks("errors.md") if b.lang == "text" and b.code.startswith("CorpAuth")
    )
    source = (_errors.__doc__ or "").split("::\n\n", 1)[1].split("\n\n", 1)[0]
    assert documented.rstrip("\n") == "\n".join(line[4:] for line in source.splitlines())
    for name in fastapi_corpauth.__all__:
        value = getattr(fastapi_corpauth, name)
        if isinstance(value, type) and issubclass(value, fastapi_corpauth.CorpAuthError):
            if name != "StoreUnavailable":  # a store's failure, raised by any store
                assert name in documented, name
