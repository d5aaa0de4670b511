"""``python -m example_app [--host H] [--port N]``: serve the example app with uvicorn.

The app's public URL (where browsers and the embedded development server reach it)
follows the host and port, unless ``--public-url`` or ``EXAMPLE_PUBLIC_URL`` names
another, e.g. behind a proxy. ``./scripts/run-example`` installs and then runs this.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .hosts import on_this_machine

WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - compared with, never bound here


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./scripts/run-example",
        description="Serve the fastapi-corpauth example app (sign in as demo / demo).",
    )
    parser.add_argument(
        "--host", default=os.environ.get("HOST", "127.0.0.1"), help="default 127.0.0.1"
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="default 8000"
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("EXAMPLE_PUBLIC_URL"),
        metavar="URL",
        help="URL browsers use to reach the app (default: http://HOST:PORT)",
    )
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    return parser


def public_url(host: str, port: int, explicit: str | None = None) -> str:
    """Where browsers reach the app; a wildcard listen address is reached as 127.0.0.1."""
    if explicit:
        return explicit.rstrip("/")
    reachable = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}"


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import uvicorn

    url = public_url(args.host, args.port, args.public_url)
    # run-example is development: a demo bank with a published password, so on this
    # machine only (set CORPAUTH_* for a real bank and deploy the app as any other).
    os.environ.setdefault("CORPAUTH_DEVELOPMENT", "true")
    development = os.environ["CORPAUTH_DEVELOPMENT"].strip().lower() in ("1", "true", "yes", "on")
    if development and (args.host in WILDCARD_HOSTS or not on_this_machine(args.host)):
        sys.exit(
            f"{build_parser().prog}: error: development mode listens on this machine only "
            f"(--host 127.0.0.1 or localhost), not on {args.host or 'every address'}"
        )
    # The app reads it when uvicorn imports example_app.main (also in reload workers).
    os.environ["EXAMPLE_PUBLIC_URL"] = url
    print(f"Example app on {url}/ (sign in as demo / demo)", flush=True)
    uvicorn.run("example_app.main:app", host=args.host, port=args.port, reload=args.reload)


if __name__ == "__main__":
    main()
