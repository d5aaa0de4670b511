"""Measure 9: the sign-in path, in process.

* Verification per sign-in: ``TokenVerifier.verify_access_token`` with the keys already
  read, against a plain PyJWT decode with a cached key (issuer and client checked), both
  over a pool of distinct tokens larger than the verifier remembers, so that every call
  checks a signature as a sign-in does (the per-request figure, where a backend sends
  the same token again and again, is measure 1's ``verified_bearer``).
* A whole sign-in: ``GET /auth/login`` and the callback's POST to a new session, CPU per
  sign-in against the verification alone (what the rest of the sign-in adds).
* 10,000 sign-ins' worth of verification: the CPU they take with a cached key set, and
  the JWKS requests made with one key rotation half-way (one is the target: the
  rotation's).

The development bank runs in process (``bench/signins.py``) and signs RS256 tokens like
Keycloak.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack

from fastapi import FastAPI
from jwt import PyJWK

from fastapi_corpauth._verifier import VERIFIED_TOKENS_REMEMBERED

from .common import CLIENT_ID, Profile, Report
from .inprocess import add_ratio, alternate, micros
from .signins import Site, Token, bank, corpauth_for, pyjwt_decode, token_pool

#: Distinct tokens cycled through: more than the verifier remembers, so none is.
POOL = VERIFIED_TOKENS_REMEMBERED + 128


async def measure(profile: Profile, report: Report) -> None:
    devserver = bank()
    dev = devserver.state.devserver
    corpauth = corpauth_for(devserver)
    site = Site(corpauth)
    pool = token_pool(devserver, POOL)
    key = PyJWK(dev.signing_key.public_jwk(), "RS256")
    clients = frozenset({CLIENT_ID})
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(corpauth.lifespan(FastAPI()))
        verifier = corpauth.verifier
        await site.sign_in(pool[0])  # discovery and keys are read from here on
        # Sign-ins and verifications draw from one cycle: no token comes back before
        # the verifier has forgotten it.
        to_verify = itertools.cycle(pool)
        to_decode = itertools.cycle(pool)

        async def verify() -> None:
            await verifier.verify_access_token(next(to_verify)["access_token"], client_ids=clients)

        async def decode() -> None:
            pyjwt_decode(next(to_decode)["access_token"], key)

        async def sign_in() -> None:
            await site.sign_in(next(to_verify))

        rounds = profile.pick(9, 5)
        checked_before = verifier.signatures_checked
        calls = await alternate(
            {"verify_access_token": verify, "PyJWT decode": decode},
            rounds=rounds,
            n=profile.pick(1000, 300),
        )
        print(
            f"  verify_access_token {micros(calls['verify_access_token'])}; "
            f"PyJWT decode {micros(calls['PyJWT decode'])}; "
            f"{verifier.signatures_checked - checked_before} signatures checked"
        )
        add_ratio(
            report,
            "9. (information) verification per sign-in (new token, cached keys) vs PyJWT decode",
            calls,
            "verify_access_token",
            "PyJWT decode",
            None,
        )
        whole = await alternate(
            {"sign-in": sign_in, "verification alone": verify},
            rounds=rounds,
            n=profile.pick(300, 100),
        )
        print(f"  whole sign-in {micros(whole['sign-in'])}")
        add_ratio(
            report,
            "9. (information) a whole sign-in (/auth/login + callback) vs its verification",
            whole,
            "sign-in",
            "verification alone",
            None,
        )

        async def verify_many(tokens: Iterator[Token], count: int) -> float:
            started = time.process_time()
            for _ in range(count):
                token = next(tokens)["access_token"]
                await verifier.verify_access_token(token, client_ids=clients)
            return time.process_time() - started

        total = 10_000
        before = dev.jwks_requests
        checked_before = verifier.signatures_checked
        cpu = await verify_many(to_verify, total // 2)
        dev.rotate_keys(grace=3600)
        rotated = token_pool(devserver, POOL)  # the bank's work: not counted
        cpu += await verify_many(itertools.cycle(rotated), total - total // 2)
        reads = dev.jwks_requests - before
        checked = verifier.signatures_checked - checked_before
        print(
            f"  {total} verifications: {cpu:.2f} s CPU, {reads} JWKS request(s), "
            f"{checked} signatures checked"
        )
        report.add(
            f"9. (information) CPU for {total:,} sign-ins' verification, cached key set",
            f"{cpu:.2f} s ({cpu / total * 1e6:.0f} µs each)",
            f"{checked:,} signatures checked",
            "–",
            "–",
            None,
        )
        report.add(
            f"9. JWKS requests during {total:,} sign-ins' verification, one key rotation",
            str(reads),
            "1 (the rotation)",
            "–",
            "= 1",
            reads == 1,
        )


def run(profile: Profile, report: Report) -> None:
    asyncio.run(measure(profile, report))
