"""The distributions users install: metadata to PyPA standards, a coherent sdist, and a
development server CLI that works after a plain ``pip install .``."""

from __future__ import annotations

import ast
import email.parser
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastapi_corpauth

ROOT = Path(__file__).resolve().parents[2]
#: Top-level folders of the project whose modules the tests and the example import.
FIRST_PARTY = ("fastapi_corpauth", "tests", "example_app", "bench")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The sdist and the wheel, built from this tree with the installed hatchling."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield sdist, wheel


def wheel_metadata(wheel: Path) -> tuple[email.message.Message, str]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
        parsed = email.parser.Parser().parsestr(archive.read(metadata).decode())
        return parsed, archive.read(entry_points).decode()


def test_wheel_metadata(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    metadata, entry_points = wheel_metadata(wheel)
    assert metadata["Version"] == fastapi_corpauth.__version__
    assert wheel.name.startswith(f"fastapi_corpauth-{fastapi_corpauth.__version__}-")
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Author"]
    assert metadata["Requires-Python"] == ">=3.11"
    urls = {url.split(",")[0] for url in metadata.get_all("Project-URL") or []}
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= urls
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers
    assert {"devserver", "redis"} <= set(metadata.get_all("Provides-Extra") or [])
    # httpcore looks for sniffio on every pool step and nothing else installs it any more:
    # without it each bank API call costs hundreds of microseconds more (bench measure 2).
    requires = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert any(r.startswith("sniffio") for r in requires), requires
    assert "corpauth-devserver = fastapi_corpauth.devserver.__main__:main" in entry_points
    assert "[pytest11]\ncorpauth = fastapi_corpauth.testing" in entry_points
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "fastapi_corpauth/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not [n for n in names if n.startswith(("tests/", "example_app/", "docs/"))]


def test_sdist_holds_everything_its_tests_import(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
        sources = {
            name.split("/", 1)[1]: archive.extractfile(name).read()  # type: ignore[union-attr]
            for name in archive.getnames()
            if name.endswith(".py")
        }
    for required in ("LICENSE", "CHANGELOG.md", "README.md", "mkdocs.yml", "pyproject.toml"):
        assert required in members, required
    assert "example_app/main.py" in members
    assert "docs/index.md" in members
    modules = {name.removesuffix(".py").replace("/", ".") for name in sources}
    modules |= {m.removesuffix(".__init__") for m in modules}
    missing = set()
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module]
            else:
                continue
            for module in imported:
                if module.split(".")[0] in FIRST_PARTY and module not in modules:
                    missing.add(f"{name}: {module}")
    assert not missing, sorted(missing)


def local_wheel_sources() -> list[str]:
    """pip options that install from this machine's local indexes and wheel folders only.

    Read from pip's own configuration (``file://`` indexes, ``find-links``), so the test
    needs no network where such a mirror exists; elsewhere pip uses its usual index.
    """
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    indexes: list[str] = []
    find_links: list[str] = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith(("index-url", "extra-index-url")):
            indexes += [v for v in values if v.startswith("file://")]
        elif key.endswith("find-links"):
            find_links += [v for v in values if Path(v.removeprefix("file://")).exists()]
    if not indexes:
        return []
    options = ["--index-url", indexes[0]]
    for index in dict.fromkeys(indexes[1:]):
        options += ["--extra-index-url", index]
    for link in dict.fromkeys(find_links):
        options += ["--find-links", link]
    return options


@pytest.mark.e2e
def test_plain_install_runs_the_devserver_help(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            *local_wheel_sources(),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    installed = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('uvicorn'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == "None"  # a plain install: no uvicorn
    for command in (
        [str(venv / "bin" / "corpauth-devserver"), "--help"],
        [str(python), "-m", "fastapi_corpauth.devserver", "--help"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
        assert "--flavour" in result.stdout
    served = subprocess.run(
        [str(venv / "bin" / "corpauth-devserver"), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 1
    assert served.stderr.count("\n") == 1, served.stderr
    assert "pip install 'fastapi-corpauth[devserver]'" in served.stderr
