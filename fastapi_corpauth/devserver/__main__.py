"""``corpauth-devserver`` / ``python -m fastapi_corpauth.devserver``: run it with uvicorn.

uvicorn is imported only here, after the arguments are parsed, so ``--help`` works on a
plain install and a missing uvicorn is one line naming the extra to install.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from ._app import DEFAULT_CLIENTS, create_devserver
from ._flavours import FLAVOURS
from ._state import SSO_SESSION_LIFETIME, SSO_SESSION_MAX, DevClient
from ._users import DEFAULT_USERS, DevUser


def _client(spec: str) -> DevClient:
    client_id, colon, client_secret = spec.partition(":")
    if not colon or not client_id:
        raise argparse.ArgumentTypeError("expected CLIENT_ID:SECRET")
    return DevClient(client_id=client_id, client_secret=client_secret)


def _public_client(client_id: str) -> DevClient:
    if not client_id:
        raise argparse.ArgumentTypeError("expected CLIENT_ID")
    return DevClient(client_id=client_id, public=True)


def _user(spec: str) -> DevUser:
    username, colon, password = spec.partition(":")
    if not colon or not username:
        raise argparse.ArgumentTypeError("expected USERNAME:PASSWORD")
    return DevUser(username=username, password=password, name=username)


def build_parser() -> argparse.ArgumentParser:
    """The command line; kept separate so it can be tested without starting a server."""
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="Keycloak-compatible development authorization server with a sample "
        "bank API. On start it prints the CORPAUTH_* settings that point an app at it.",
        epilog="Needs uvicorn to serve: pip install 'fastapi-corpauth[devserver]'.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on")
    parser.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="URL apps and browsers reach it at, for the printed settings "
        "(default: http://HOST:PORT)",
    )
    parser.add_argument("--realm", default="bog")
    parser.add_argument("--flavour", choices=sorted(FLAVOURS), default="modern")
    parser.add_argument("--token-lifetime", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument(
        "--client",
        dest="clients",
        type=_client,
        action="append",
        metavar="CLIENT_ID:SECRET",
        help="register a confidential client (repeatable; default corp-app:dev-secret)",
    )
    parser.add_argument(
        "--public-client",
        dest="public_clients",
        type=_public_client,
        action="append",
        default=[],
        metavar="CLIENT_ID",
        help="register a public client for browser sign-in without a secret (repeatable)",
    )
    parser.add_argument(
        "--user",
        dest="users",
        type=_user,
        action="append",
        metavar="USERNAME:PASSWORD",
        help="register a dev user for the sign-in page (repeatable; default demo:demo)",
    )
    parser.add_argument("--implicit-token-lifetime", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument(
        "--dev-token",
        default=None,
        metavar="TOKEN",
        help="the X-Dev-Token header the /_dev test controls require (default: a random "
        "one, printed on start)",
    )
    parser.add_argument(
        "--sso-idle",
        type=float,
        default=SSO_SESSION_LIFETIME,
        metavar="SECONDS",
        help="end a browser's session after this long without a refresh (default 1800)",
    )
    parser.add_argument(
        "--sso-max",
        type=float,
        default=SSO_SESSION_MAX,
        metavar="SECONDS",
        help="end a browser's session this long after signing in (default 36000)",
    )
    parser.add_argument(
        "--path-prefix",
        default="",
        help="serve under a prefix such as /auth, like Keycloak <= 16 (default: none)",
    )
    return parser


def build_app(args: argparse.Namespace) -> FastAPI:
    """The ASGI app for parsed arguments, mounted under ``--path-prefix`` when given."""
    devserver = create_devserver(
        realm=args.realm,
        flavour=args.flavour,
        token_lifetime=args.token_lifetime,
        sso_idle=args.sso_idle,
        sso_max=args.sso_max,
        dev_token=args.dev_token,
        clients=[*(args.clients or DEFAULT_CLIENTS), *args.public_clients],
        users=args.users or DEFAULT_USERS,
        implicit_token_lifetime=args.implicit_token_lifetime,
    )
    prefix = args.path_prefix.rstrip("/")
    if not prefix:
        return devserver
    outer = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    outer.mount(prefix, devserver)
    outer.state.devserver = devserver.state.devserver
    return outer


def _program_name() -> str:
    if Path(sys.argv[0]).name == "corpauth-devserver":
        return "corpauth-devserver"
    return "python -m fastapi_corpauth.devserver"


def public_url(args: argparse.Namespace) -> str:
    """Where apps reach the server: ``--public-url``, else its host and port.

    A wildcard listen address (``0.0.0.0``, ``::``) is reachable as ``127.0.0.1``.
    """
    prefix = str(args.path_prefix).rstrip("/")
    if args.public_url:
        return str(args.public_url).rstrip("/") + prefix
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{args.port}{prefix}"


def settings_lines(args: argparse.Namespace, *, session_secret: str) -> list[str]:
    """The ``CORPAUTH_*`` lines that point an app at this server, ready for a ``.env``."""
    base = public_url(args)
    clients = [*(args.clients or DEFAULT_CLIENTS), *args.public_clients]
    client = next((c for c in clients if not c.public), clients[0])
    lines = [
        f"CORPAUTH_ISSUER={base}/realms/{args.realm}",
        f"CORPAUTH_API_BASE_URL={base}/api",
        f"CORPAUTH_CLIENT_ID={client.client_id}",
    ]
    if not client.public:
        lines.append(f"CORPAUTH_CLIENT_SECRET={client.client_secret}")
    lines.append(f"CORPAUTH_SESSION_SECRET={session_secret}")
    # The callback URL then comes from the request, on this machine only; production
    # sets CORPAUTH_REDIRECT_URI instead.
    lines.append("CORPAUTH_DEVELOPMENT=true")
    return lines


def banner(args: argparse.Namespace, *, session_secret: str) -> str:
    """What the server prints on start: where it is, who can sign in, what to paste."""
    users = args.users or DEFAULT_USERS
    sign_in = ", ".join(f"{user.username} / {user.password}" for user in users)
    return "\n".join(
        [
            f"Development authorization server ({args.flavour}) on {public_url(args)}",
            f"Sign in as {sign_in}.",
            "Point your app at it with these settings (environment or .env):",
            "",
            *settings_lines(args, session_secret=session_secret),
            "",
            f"Test controls under {public_url(args)}/_dev/ need the header "
            f"X-Dev-Token: {args.dev_token}",
            "",
        ]
    )


MISSING_UVICORN = "the development server needs uvicorn: pip install 'fastapi-corpauth[devserver]'"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, print the settings to paste and serve until interrupted."""
    args = build_parser().parse_args(argv)
    if args.dev_token is None:
        args.dev_token = secrets.token_urlsafe(16)
    try:
        import uvicorn
    except ImportError:
        sys.exit(f"{_program_name()}: error: {MISSING_UVICORN}")
    app = build_app(args)
    print(banner(args, session_secret=secrets.token_urlsafe(32)), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
