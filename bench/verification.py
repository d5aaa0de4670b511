"""Measure 9: what verifying customers' tokens costs, in process.

* per ``verified_bearer`` request: ASGI calls (no server, no network) of identical routes
  whose only dependency is a no-op, a plain PyJWT decode with a cached key (the
  floor any verifying resource server pays), or ``Depends(corpauth.verified_bearer)``;
  CPU time per request, median of rounds with their spread;
* per sign-in: ``TokenVerifier.verify_access_token`` with cached keys against the same
  plain PyJWT decode, and the whole ``/auth/login`` + callback to a session;
* key reads: JWKS requests made by 10,000 sign-ins with the keys already read and one
  key rotation half-way (one request is the target: the rotation's).

The development server runs in process (ASGI) and signs RS256 tokens like Keycloak.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from fastapi import Depends, FastAPI, Request
from jwt import PyJWK

from fastapi_corpauth import CorpAuth, CorpAuthSettings, VerifiedToken
from fastapi_corpauth.devserver import DevClient, create_devserver

from .common import Profile, Report

CLIENT_ID = "corp-app"
CLIENT_SECRET = "dev-secret"
BASE = "http://bank.test"
ISSUER = BASE + "/realms/bog"


def build(devserver: FastAPI) -> tuple[CorpAuth, FastAPI, dict[str, Any]]:
    settings = CorpAuthSettings(
        _env_file=None,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=ISSUER,
        api_base_url=BASE + "/api",
        session_secret="bench-session-secret-0123456789abcdef",
        session_store_max_entries=50_000,
    )
    corpauth = CorpAuth(settings, transport=httpx.ASGITransport(app=devserver))
    state = devserver.state.devserver
    cached: dict[str, Any] = {"key": PyJWK(state.signing_key.public_jwk(), "RS256")}
    app = FastAPI()

    async def noop() -> None:
        return None

    async def plain_pyjwt(request: Request) -> dict[str, Any]:
        token = request.headers["authorization"].partition(" ")[2]
        claims: dict[str, Any] = jwt.decode(
            token,
            cached["key"],
            algorithms=["RS256"],
            issuer=ISSUER,
            options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
        )
        if claims.get("azp") != CLIENT_ID:
            raise ValueError("another client's token")
        return claims

    @app.get("/noop")
    async def noop_route(_: None = Depends(noop)) -> dict[str, str]:
        return {"subject": "-"}

    @app.get("/pyjwt")
    async def pyjwt_route(claims: dict[str, Any] = Depends(plain_pyjwt)) -> dict[str, str]:
        return {"subject": claims["sub"]}

    @app.get("/verified")
    async def verified_route(
        customer: VerifiedToken = Depends(corpauth.verified_bearer),
    ) -> dict[str, str]:
        return {"subject": customer.subject}

    app.include_router(corpauth.router, prefix="/auth")
    return corpauth, app, cached


async def call(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One ASGI request without a client or server; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("app.test", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def cpu_per_call(operation: Callable[[], Awaitable[Any]], n: int) -> float:
    """Microseconds of process CPU per call, over ``n`` calls."""
    started = time.process_time()
    for _ in range(n):
        await operation()
    return (time.process_time() - started) / n * 1e6


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}/{statistics.median(values):.0f}/{max(values):.0f} µs"


async def per_request(app: FastAPI, token: str, rounds: int, n: int) -> dict[str, list[float]]:
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"app.test")]
    results: dict[str, list[float]] = {"/noop": [], "/pyjwt": [], "/verified": []}
    for path in results:
        assert await call(app, path, headers) == 200, path
    for r in range(rounds):
        order = list(results)[r % 3 :] + list(results)[: r % 3]
        for path in order:
            results[path].append(await cpu_per_call(lambda p=path: call(app, p, headers), n))
    return results


async def sign_ins(
    corpauth: CorpAuth, app: FastAPI, dev: Any, token: dict[str, Any], total: int
) -> tuple[float, int]:
    """``total`` sign-ins through the router; CPU µs per sign-in and the key reads made."""
    before = dev.jwks_requests
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        started = time.process_time()
        for n in range(total):
            if n == total // 2:
                dev.rotate_keys(grace=3600)
                token = mint(dev, "demo")
            client.cookies.clear()
            login = await client.get("/auth/login")
            state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
            done = await client.post(
                "/auth/callback",
                data={
                    "corpauth_relay": "fragment",
                    "state": state,
                    "access_token": token["access_token"],
                    "token_type": "Bearer",
                    "expires_in": str(token["expires_in"]),
                    "iss": ISSUER,
                },
            )
            if done.status_code != 303:
                raise RuntimeError(f"sign-in {n} answered {done.status_code}")
        cpu = (time.process_time() - started) / total * 1e6
    return cpu, dev.jwks_requests - before


def mint(dev: Any, username: str) -> dict[str, Any]:
    issued = dev.mint_user_tokens(client_id=CLIENT_ID, issuer=ISSUER, username=username)
    return {"access_token": issued.access_token, "expires_in": issued.expires_in}


async def measure(profile: Profile, report: Report) -> None:
    devserver = create_devserver(
        clients=(DevClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),),
        implicit_token_lifetime=3600,
    )
    dev = devserver.state.devserver
    corpauth, app, _ = build(devserver)
    token = mint(dev, "demo")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(app))
        rounds = profile.pick(9, 5)
        n = profile.pick(2000, 500)
        results = await per_request(app, token["access_token"], rounds, n)
        noop, plain, verified = (results[p] for p in ("/noop", "/pyjwt", "/verified"))
        for path, values in results.items():
            print(f"  {path:<10} CPU per request min/median/max {spread(values)}")
        ratio = statistics.median(verified) / statistics.median(plain)
        report.add(
            "9. verified_bearer vs plain PyJWT decode (cached key), per request",
            spread(verified),
            spread(plain),
            f"{ratio:.2f}× time",
            "≤ 1.10× time",
            ratio <= 1.10,
        )
        report.add(
            "9. (attribution) verification cost per request over a no-op dependency",
            f"{statistics.median(verified) - statistics.median(noop):.0f} µs",
            f"PyJWT: {statistics.median(plain) - statistics.median(noop):.0f} µs",
            "–",
            "–",
            None,
        )
        verifier = corpauth.verifier
        key = PyJWK(dev.signing_key.public_jwk(), "RS256")

        async def verify() -> None:
            await verifier.verify_access_token(
                token["access_token"], client_ids=frozenset({CLIENT_ID})
            )

        async def decode() -> None:
            jwt.decode(
                token["access_token"],
                key,
                algorithms=["RS256"],
                issuer=ISSUER,
                options={"verify_aud": False},
            )

        direct = [await cpu_per_call(verify, n) for _ in range(rounds)]
        floor = [await cpu_per_call(decode, n) for _ in range(rounds)]
        print(f"  verify_access_token {spread(direct)}; PyJWT decode {spread(floor)}")
        report.add(
            "9. verification per sign-in (cached keys) vs PyJWT decode",
            spread(direct),
            spread(floor),
            f"{statistics.median(direct) / statistics.median(floor):.2f}× time",
            "–",
            None,
        )
        total = profile.pick(10_000, 2_000)
        per_sign_in, reads = await sign_ins(corpauth, app, dev, token, total)
        print(f"  {total} sign-ins: {per_sign_in:.0f} µs CPU each, {reads} JWKS request(s)")
        report.add(
            f"9. JWKS requests during {total:,} sign-ins with one key rotation",
            str(reads),
            "1 (the rotation)",
            "–",
            "= 1",
            reads == 1,
        )
        report.add(
            "9. (information) CPU per sign-in: /auth/login + callback, verified",
            f"{per_sign_in:.0f} µs",
            "–",
            "–",
            "–",
            None,
        )


def run(profile: Profile, report: Report) -> None:
    asyncio.run(measure(profile, report))
