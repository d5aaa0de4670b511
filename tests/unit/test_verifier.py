"""The verifier service: key fetching (cache, single flight, rate limit), modes, outages."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from fastapi_corpauth import (
    ClientCredentials,
    Endpoints,
    InvalidToken,
    VerificationPolicy,
    VerificationUnavailable,
)
from fastapi_corpauth._discovery import Discovery
from fastapi_corpauth._metadata import fallback_metadata
from fastapi_corpauth._protocol import basic_authorization
from fastapi_corpauth._verifier import TokenVerifier
from fastapi_corpauth.devserver._jwt import SigningKey, sign_jwt
from tests.support import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    OTHER_SIGNING_KEY,
    SIGNING_KEY,
    FakeClock,
)
from tests.unit.test_verification import b64, keycloak_claims

pytestmark = pytest.mark.anyio

JWKS_URL = ISSUER + "/protocol/openid-connect/certs"
INTROSPECT_URL = ISSUER + "/protocol/openid-connect/token/introspect"
CLIENTS = frozenset({CLIENT_ID})
NOW = 1_700_000_000.0


class Issuer:
    """The issuer's key and introspection endpoints, with switches to break them."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = [SIGNING_KEY]
        self.jwks_answer: Any = None  # None: the keys; an int: that status; an exception
        self.jwks_requests = 0
        self.introspection: dict[str, Any] = {"active": False}
        self.introspection_status = 200
        self.introspection_requests: list[dict[str, str]] = []
        self.latency = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        url = str(request.url)
        if url == JWKS_URL:
            self.jwks_requests += 1
            if isinstance(self.jwks_answer, Exception):
                raise self.jwks_answer
            if isinstance(self.jwks_answer, int):
                return httpx.Response(self.jwks_answer)
            return httpx.Response(200, json={"keys": [k.public_jwk() for k in self.keys]})
        if url == INTROSPECT_URL:
            assert request.headers["authorization"] == basic_authorization(CLIENT_ID, CLIENT_SECRET)
            self.introspection_requests.append(dict(parse_qsl(request.content.decode())))
            return httpx.Response(self.introspection_status, json=self.introspection)
        return httpx.Response(404)


def make_verifier(issuer: Issuer, clock: FakeClock, **policy: Any) -> TokenVerifier:
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer))
    endpoints = Endpoints.from_issuer(ISSUER)
    return TokenVerifier(
        http=http,
        discovery=Discovery(
            http=http,
            issuer=ISSUER,
            fallback=fallback_metadata(endpoints),
            overrides={},
            enabled=False,
            clock=clock,
        ),
        credentials=ClientCredentials(client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)),
        policy=VerificationPolicy(**policy),
        clock=clock,
    )


def token(key: SigningKey = SIGNING_KEY, **claims: Any) -> str:
    return sign_jwt(keycloak_claims(**claims), key=key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def test_keys_are_read_once_for_many_tokens(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    for n in range(20):
        verified = await verifier.verify_access_token(token(sub=f"u{n}"), client_ids=CLIENTS)
        assert verified.subject == f"u{n}"
    assert issuer.jwks_requests == 1


async def test_concurrent_first_verifications_share_one_key_request(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.latency = 0.05
    verifier = make_verifier(issuer, clock)
    results = await asyncio.gather(
        *(verifier.verify_access_token(token(), client_ids=CLIENTS) for _ in range(100))
    )
    assert len(results) == 100
    assert issuer.jwks_requests == 1


async def test_a_rotated_key_costs_one_refetch(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock, key_refetch_interval=10)
    await verifier.verify_access_token(token(), client_ids=CLIENTS)
    issuer.keys = [SIGNING_KEY, OTHER_SIGNING_KEY]  # rotated right after the first read
    for _ in range(10):
        await verifier.verify_access_token(token(OTHER_SIGNING_KEY), client_ids=CLIENTS)
    assert issuer.jwks_requests == 2
    issuer.keys = [OTHER_SIGNING_KEY, SIGNING_KEY]
    third = SigningKey.generate()
    issuer.keys.append(third)  # rotated again within the interval: wait for it
    with pytest.raises(InvalidToken, match="does not publish"):
        await verifier.verify_access_token(token(third), client_ids=CLIENTS)
    clock.advance(10)
    await verifier.verify_access_token(token(third), client_ids=CLIENTS)
    assert issuer.jwks_requests == 3


async def test_random_key_ids_cannot_amplify(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock, key_refetch_interval=10)
    await verifier.verify_access_token(token(), client_ids=CLIENTS)
    refused = 0
    for n in range(1000):
        stranger = SigningKey(kid=secrets.token_hex(8), private_key=SIGNING_KEY.private_key)
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify_access_token(token(stranger), client_ids=CLIENTS)
        refused += caught.value.reason == "unknown_key"
        if n % 100 == 99:
            clock.advance(1)  # 1,000 tokens over 10 seconds
    assert refused == 1000
    assert issuer.jwks_requests <= 3  # the first read, and one per refetch interval


async def test_unallowed_algorithms_fetch_no_keys(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    unsigned = b64({"alg": "none", "kid": SIGNING_KEY.kid}) + "." + b64(keycloak_claims()) + "."
    hs256 = b64({"alg": "HS256", "kid": SIGNING_KEY.kid}) + "." + b64(keycloak_claims()) + ".c2ln"
    for forged in (unsigned, hs256):
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify_access_token(forged, client_ids=CLIENTS)
        assert caught.value.reason == "algorithm"
    assert issuer.jwks_requests == 0


async def test_unreachable_keys_are_unavailable_not_invalid(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.jwks_answer = httpx.ConnectError("refused")
    verifier = make_verifier(issuer, clock, key_refetch_interval=5)
    for _ in range(5):
        with pytest.raises(VerificationUnavailable):
            await verifier.verify_access_token(token(), client_ids=CLIENTS)
    assert issuer.jwks_requests == 1  # failures are rate limited too
    issuer.jwks_answer = None
    clock.advance(5)
    assert (await verifier.verify_access_token(token(), client_ids=CLIENTS)).subject == "user-1"


@pytest.mark.parametrize("answer", [500, 200])
async def test_unusable_keys_are_unavailable(clock: FakeClock, answer: int) -> None:
    issuer = Issuer()
    issuer.jwks_answer = answer if answer != 200 else None
    if answer == 200:
        issuer.keys = []
    verifier = make_verifier(issuer, clock)
    with pytest.raises((VerificationUnavailable, InvalidToken)):
        await verifier.verify_access_token(token(), client_ids=CLIENTS)


async def test_keys_outlive_a_failed_refresh(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    long_lived = token(exp=int(NOW + 7200))
    await verifier.verify_access_token(long_lived, client_ids=CLIENTS)
    issuer.jwks_answer = 503
    clock.advance(3601)  # the keys are due for a refresh, which fails
    assert (await verifier.verify_access_token(long_lived, client_ids=CLIENTS)).subject == "user-1"
    assert issuer.jwks_requests == 2


async def test_a_key_removed_by_the_issuer_stops_verifying_after_a_refresh(
    clock: FakeClock,
) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    old = token(exp=int(NOW + 7200))
    await verifier.verify_access_token(old, client_ids=CLIENTS)
    issuer.keys = [OTHER_SIGNING_KEY]
    clock.advance(3601)
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_access_token(old, client_ids=CLIENTS)
    assert caught.value.reason == "unknown_key"


# --- modes and introspection -----------------------------------------------------------------


def active(**changes: Any) -> dict[str, Any]:
    answer = {
        "active": True,
        "client_id": CLIENT_ID,
        "username": "nino",
        "sub": "user-1",
        "exp": int(NOW + 300),
    }
    answer.update(changes)
    return answer


async def test_auto_introspects_opaque_tokens(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.introspection = active()
    verifier = make_verifier(issuer, clock)
    verified = await verifier.verify_access_token("opaque-0123456789", client_ids=CLIENTS)
    assert verified.method == "introspection"
    assert issuer.introspection_requests == [
        {"token": "opaque-0123456789", "token_type_hint": "access_token"}
    ]
    assert issuer.jwks_requests == 0


async def test_auto_introspects_a_jwt_of_no_access_token_profile(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.introspection = active()
    verifier = make_verifier(issuer, clock)
    markerless = sign_jwt(keycloak_claims(typ=None), key=SIGNING_KEY)
    assert (await verifier.verify_access_token(markerless, client_ids=CLIENTS)).method == (
        "introspection"
    )
    issuer.introspection = {"active": False}
    with pytest.raises(InvalidToken, match="not active"):
        await verifier.verify_access_token(markerless, client_ids=CLIENTS)


async def test_auto_introspects_when_the_issuer_publishes_no_keys(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.jwks_answer = 404
    issuer.introspection = active()
    verifier = make_verifier(issuer, clock)
    assert (await verifier.verify_access_token(token(), client_ids=CLIENTS)).method == (
        "introspection"
    )


async def test_jwt_mode_never_introspects(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.introspection = active()
    verifier = make_verifier(issuer, clock, mode="jwt")
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_access_token("opaque-0123456789", client_ids=CLIENTS)
    assert caught.value.reason == "malformed"
    with pytest.raises(InvalidToken):
        await verifier.verify_access_token(
            sign_jwt(keycloak_claims(typ=None), key=SIGNING_KEY), client_ids=CLIENTS
        )
    assert issuer.introspection_requests == []


async def test_introspection_mode_asks_about_every_token(clock: FakeClock) -> None:
    issuer = Issuer()
    issuer.introspection = active(client_id="other-app")
    verifier = make_verifier(issuer, clock, mode="introspection")
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_access_token(token(), client_ids=CLIENTS)
    assert caught.value.reason == "client"
    assert issuer.jwks_requests == 0
    assert len(issuer.introspection_requests) == 1


@pytest.mark.parametrize("status", [401, 403, 500, 503])
async def test_a_failing_introspection_endpoint_is_unavailable(
    clock: FakeClock, status: int
) -> None:
    issuer = Issuer()
    issuer.introspection_status = status
    verifier = make_verifier(issuer, clock, mode="introspection")
    with pytest.raises(VerificationUnavailable):
        await verifier.verify_access_token("opaque", client_ids=CLIENTS)


async def test_an_introspection_answer_that_is_not_json_is_unavailable(clock: FakeClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>login</html>")

    verifier = make_verifier(Issuer(), clock, mode="introspection")
    verifier._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with pytest.raises(VerificationUnavailable):
        await verifier.verify_access_token("opaque", client_ids=CLIENTS)


async def test_the_id_token_is_checked_against_keys_and_nonce(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    access_token = token()
    access = await verifier.verify_access_token(access_token, client_ids=CLIENTS)
    from fastapi_corpauth._verification import at_hash

    id_claims = {
        "exp": int(NOW + 300),
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "user-1",
        "typ": "ID",
        "nonce": "n-1",
        "at_hash": at_hash(access_token, "RS256"),
    }
    id_token = sign_jwt(id_claims, key=SIGNING_KEY)
    await verifier.verify_id_token(id_token, access=access, access_token=access_token, nonce="n-1")
    with pytest.raises(InvalidToken, match="nonce"):
        await verifier.verify_id_token(
            id_token, access=access, access_token=access_token, nonce="n-2"
        )
    forged = sign_jwt(
        id_claims, key=SigningKey(kid=SIGNING_KEY.kid, private_key=OTHER_SIGNING_KEY.private_key)
    )
    with pytest.raises(InvalidToken, match="signature"):
        await verifier.verify_id_token(
            forged, access=access, access_token=access_token, nonce="n-1"
        )
    with pytest.raises(InvalidToken):
        await verifier.verify_id_token(
            "opaque", access=access, access_token=access_token, nonce="n-1"
        )


def test_repr_names_no_key_material() -> None:
    verifier = make_verifier(Issuer(), FakeClock())
    assert "mode='auto'" in repr(verifier)
    assert json.dumps(SIGNING_KEY.public_jwk()["n"]) not in repr(verifier)


# --- signatures remembered -------------------------------------------------------------------


async def test_a_token_sent_again_is_not_verified_again_but_its_claims_are(
    clock: FakeClock,
) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    sent = token(exp=int(NOW + 60))
    for _ in range(5):
        assert (await verifier.verify_access_token(sent, client_ids=CLIENTS)).subject == "user-1"
    assert verifier.signatures_checked == 1
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_access_token(sent, client_ids=frozenset({"another-app"}))
    assert caught.value.reason == "client"
    clock.advance(120)
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_access_token(sent, client_ids=CLIENTS)
    assert caught.value.reason == "expired"
    assert verifier.signatures_checked == 1


async def test_only_a_verified_signature_is_remembered(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    header, payload, signature = token().split(".")
    forged = ".".join(
        (header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB"))
    )
    for _ in range(3):
        with pytest.raises(InvalidToken):
            await verifier.verify_access_token(forged, client_ids=CLIENTS)
    assert verifier.signatures_checked == 3


async def test_a_refreshed_key_set_verifies_remembered_tokens_again(clock: FakeClock) -> None:
    issuer = Issuer()
    verifier = make_verifier(issuer, clock)
    sent = token(exp=int(NOW + 7200))
    await verifier.verify_access_token(sent, client_ids=CLIENTS)
    clock.advance(3601)  # the keys are read again, and hold the same key
    await verifier.verify_access_token(sent, client_ids=CLIENTS)
    assert (issuer.jwks_requests, verifier.signatures_checked) == (2, 2)


async def test_remembered_signatures_are_bounded(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fastapi_corpauth._verifier.VERIFIED_TOKENS_REMEMBERED", 8)
    verifier = make_verifier(Issuer(), clock)
    first = token(sub="u0")
    await verifier.verify_access_token(first, client_ids=CLIENTS)
    for n in range(1, 20):
        await verifier.verify_access_token(token(sub=f"u{n}"), client_ids=CLIENTS)
    assert len(verifier._verified) == 8
    await verifier.verify_access_token(first, client_ids=CLIENTS)
    assert verifier.signatures_checked == 21  # the first token had been forgotten
