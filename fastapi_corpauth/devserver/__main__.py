"""``python -m fastapi_corpauth.devserver``: run the devserver with uvicorn.

uvicorn is imported only here, so the library never depends on it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fastapi import FastAPI

from ._app import DEFAULT_CLIENTS, create_devserver
from ._flavours import FLAVOURS
from ._state import DevClient
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
        prog="python -m fastapi_corpauth.devserver",
        description="Keycloak-compatible dev authorization server with a sample bank API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
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


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, print the issuer URL and serve until interrupted."""
    import uvicorn

    args = build_parser().parse_args(argv)
    app = build_app(args)
    prefix = args.path_prefix.rstrip("/")
    print(
        f"devserver ({args.flavour}): issuer http://{args.host}:{args.port}"
        f"{prefix}/realms/{args.realm}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
