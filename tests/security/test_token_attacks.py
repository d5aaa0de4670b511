"""The attack catalogue: tokens an attacker can deliver to the callback with a live state.

Each case starts a genuine sign-in (so the state, the cookie and the ``iss`` are right),
swaps the bank's token for a forged, foreign or misused one, delivers it, and asserts a
clean 4xx with a stable code, no session cookie and no session in the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from fastapi_corpauth.devserver._jwt import SigningKey, sign_hmac_jwt, sign_jwt
from tests.security.conftest import CLIENT_SECRET, ISSUER, Browser, Site, open_site
from tests.security.test_login_csrf import assert_refused, bank_answer, deliver, sessions_in
from tests.support import OTHER_SIGNING_KEY

pytestmark = pytest.mark.anyio


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


#: Makes a forged token from the site and the genuine token the bank just issued.
Forgery = Callable[[Site, str], str]


def plain_string(site: Site, genuine: str) -> str:
    return "x"


def alg_none(site: Site, genuine: str) -> str:
    claims = {**claims_of(genuine), "name": "Forged CEO", "preferred_username": "ceo"}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def hs256_with_public_key(site: Site, genuine: str) -> str:
    public_pem = site.dev.signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": site.dev.signing_key.kid}
    return hs256(header, {**claims_of(genuine), "name": "Forged CEO"}, public_pem)


def hs256_with_client_secret(site: Site, genuine: str) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": site.dev.signing_key.kid}
    return hs256(header, {**claims_of(genuine), "name": "Forged CEO"}, CLIENT_SECRET.encode())


def stranger_key_with_server_kid(site: Site, genuine: str) -> str:
    impostor = SigningKey(kid=site.dev.signing_key.kid, private_key=OTHER_SIGNING_KEY.private_key)
    return sign_jwt({**claims_of(genuine), "name": "Forged CEO"}, key=impostor)


def payload_rewritten(site: Site, genuine: str) -> str:
    header, _, signature = genuine.split(".")
    return f"{header}.{b64({**claims_of(genuine), 'sub': 'someone-else'})}.{signature}"


def realm_signed(**changes: Any) -> Forgery:
    """A token the realm's own key signed, with claims an attacker cannot have chosen;
    each stands for a genuine token of the wrong kind (expired, another issuer...)."""

    def forge(site: Site, genuine: str) -> str:
        claims = {**claims_of(genuine), **changes}
        for name in ("exp", "nbf"):
            if isinstance(claims.get(name), float):
                claims[name] = int(site.dev.clock() + claims[name])
        return sign_jwt(
            {k: v for k, v in claims.items() if v is not None}, key=site.dev.signing_key
        )

    return forge


def other_clients_token(site: Site, genuine: str) -> str:
    return str(site.dev.mint_user_tokens(client_id="other-app", issuer=ISSUER).access_token)


def id_token(site: Site, genuine: str) -> str:
    issued = site.dev.mint_user_tokens(
        client_id="corp-app", issuer=ISSUER, scope="openid corp", implicit=False, nonce="n"
    )
    return str(issued.id_token)


def refresh_token(site: Site, genuine: str) -> str:
    issued = site.dev.mint_user_tokens(client_id="corp-app", issuer=ISSUER, implicit=False)
    return str(issued.refresh_token)


def refresh_token_rs256(site: Site, genuine: str) -> str:
    return realm_signed(typ="Refresh", aud=ISSUER)(site, genuine)


def hmac_refresh_signed_as_access(site: Site, genuine: str) -> str:
    # The realm's HMAC key signs refresh tokens; an access-token-shaped body signed
    # with it is still not RS256 from the published keys.
    return sign_hmac_jwt(claims_of(genuine), secret=secrets.token_bytes(64), kid="hmac")


ATTACKS: dict[str, Forgery] = {
    "plain-string": plain_string,
    "alg-none": alg_none,
    "hs256-public-key": hs256_with_public_key,
    "hs256-client-secret": hs256_with_client_secret,
    "stranger-key-server-kid": stranger_key_with_server_kid,
    "payload-rewritten": payload_rewritten,
    "expired": realm_signed(exp=-60.0, iat=None),
    "not-yet-valid": realm_signed(nbf=120.0),
    "another-issuer": realm_signed(iss="http://bank.test/realms/other"),
    "another-client": other_clients_token,
    "aud-names-us-azp-another": realm_signed(aud="corp-app", azp="other-app"),
    "id-token": id_token,
    "refresh-token": refresh_token,
    "refresh-token-rs256": refresh_token_rs256,
    "hmac-signed": hmac_refresh_signed_as_access,
    "no-subject": realm_signed(sub=None),
}

EXPECTED_REASON = {
    "plain-string": "inactive",
    "alg-none": "algorithm",
    "hs256-public-key": "algorithm",
    "hs256-client-secret": "algorithm",
    "stranger-key-server-kid": "signature",
    "payload-rewritten": "signature",
    "expired": "expired",
    "not-yet-valid": "not_yet_valid",
    "another-issuer": "issuer",
    "another-client": "client",
    "aud-names-us-azp-another": "client",
    "id-token": "token_type",
    "refresh-token": "algorithm",
    "refresh-token-rs256": "token_type",
    "hmac-signed": "algorithm",
    "no-subject": "subject",
}


async def attempt(site: Site, browser: Browser, forge: Forgery) -> httpx.Response:
    """A genuine sign-in whose token is swapped for a forged one before delivery."""
    _, fields = await bank_answer(browser)
    forged = forge(site, fields["access_token"])
    site.secrets.add(forged)
    return await deliver(browser, {**fields, "access_token": forged})


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_and_foreign_tokens_sign_nobody_in(
    attack: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "fastapi_corpauth")
    async with open_site() as site:
        browser = await site.browser()
        response = await attempt(site, browser, ATTACKS[attack])
        await assert_refused(browser, response, "invalid_token")
        assert sessions_in(site) == 0
        assert f"sign-in refused: invalid_token ({EXPECTED_REASON[attack]})" in caplog.text
        # The genuine path still works for this browser afterwards.
        outcome = await browser.sign_in()
        assert outcome.final.status_code == 303
        assert (await browser.get("/me")).json() == {"name": "Nino Beridze"}


async def test_a_service_account_token_is_not_a_customer() -> None:
    async with open_site() as site:
        browser = await site.browser()
        service = (await site.corpauth.get_token()).access_token  # this app's own
        site.secrets.add(service)
        response = await attempt(site, browser, lambda site, genuine: service)
        await assert_refused(browser, response, "invalid_token")
        assert sessions_in(site) == 0


async def test_a_token_signed_by_a_retired_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", "fastapi_corpauth")
    async with open_site(jwks_refetch_interval=0) as site:
        browser = await site.browser()
        _, fields = await bank_answer(browser)
        old = fields["access_token"]  # signed by the key about to be retired
        site.dev.rotate_keys(grace=0)
        response = await deliver(browser, fields)
        await assert_refused(browser, response, "invalid_token")
        assert "(unknown_key)" in caplog.text
        assert sessions_in(site) == 0
        assert site.dev.check_access_token(old) == "Invalid token"  # the bank agrees


@pytest.mark.parametrize(
    ("flavour", "forge", "reason"),
    [
        ("opaque", plain_string, "inactive"),
        ("opaque", lambda site, genuine: secrets.token_urlsafe(32), "inactive"),
        ("opaque", other_clients_token, "client"),
        ("rfc9068", other_clients_token, "client"),
        ("rfc9068", realm_signed(sub="corp-app"), "service_account"),
        ("legacy", other_clients_token, "client"),
    ],
    ids=[
        "opaque-x",
        "opaque-random",
        "opaque-other-client",
        "rfc9068-other-client",
        "rfc9068-client-as-subject",
        "legacy-other-client",
    ],
)
async def test_other_token_formats(
    flavour: str, forge: Forgery, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "fastapi_corpauth")
    async with open_site(flavour=flavour) as site:
        browser = await site.browser()
        response = await attempt(site, browser, forge)
        await assert_refused(browser, response, "invalid_token")
        assert f"({reason})" in caplog.text
        assert sessions_in(site) == 0


@pytest.mark.parametrize("mode", ["form_post", "query"])
@pytest.mark.parametrize("attack", ["alg-none", "another-client", "plain-string"])
async def test_every_delivery_route_verifies(mode: str, attack: str) -> None:
    """By POST (form_post) and by GET (query, where the bank's docs put it)."""
    # The bank's docs describe a legacy Keycloak: it needs client_secret_post for a
    # secret with special characters (protocol notes §2.5), introspection included.
    legacy: dict[str, Any] = {"flavour": "bank-docs", "client_auth_method": "client_secret_post"}
    async with open_site(response_mode=mode, **(legacy if mode == "query" else {})) as site:
        browser = await site.browser()
        _, state = await browser.start()
        genuine = site.dev.mint_user_tokens(client_id="corp-app", issuer=ISSUER).access_token
        forged = ATTACKS[attack](site, genuine)
        site.secrets |= {forged, genuine}
        fields = {"state": state, "access_token": forged, "token_type": "Bearer", "iss": ISSUER}
        if mode == "query":
            response = await browser.get("/auth/callback?" + urlencode(fields))
        else:
            response = await browser.post("/auth/callback", data=fields)
        await assert_refused(browser, response, "invalid_token")
        assert sessions_in(site) == 0


async def test_a_genuine_token_in_the_query_when_the_fragment_was_asked_for() -> None:
    async with open_site() as site:
        browser = await site.browser()
        _, fields = await bank_answer(browser)
        response = await browser.get("/auth/callback?" + urlencode(fields))
        await assert_refused(browser, response, "response_mode_mismatch")
        assert sessions_in(site) == 0


async def test_a_callback_without_the_promised_iss() -> None:
    async with open_site() as site:  # the modern flavour announces iss (RFC 9207)
        browser = await site.browser()
        _, fields = await bank_answer(browser)
        del fields["iss"]
        await assert_refused(browser, await deliver(browser, fields), "issuer_mismatch")
        assert sessions_in(site) == 0


async def test_a_thousand_random_key_ids_cost_a_handful_of_key_reads() -> None:
    async with open_site() as site:
        browser = await site.browser()
        _, fields = await bank_answer(browser)
        assert (await deliver(browser, fields)).status_code == 303  # keys read once
        claims = claims_of(fields["access_token"])
        before = site.dev.jwks_requests
        for _ in range(1000):
            _, state = await browser.start()
            stranger = SigningKey(
                kid=secrets.token_hex(12), private_key=OTHER_SIGNING_KEY.private_key
            )
            forged = sign_jwt(claims, key=stranger)
            response = await deliver(
                browser,
                {"state": state, "access_token": forged, "token_type": "Bearer", "iss": ISSUER},
            )
            assert response.status_code == 400
        # The default refetch interval is 10 s: a second or two of flood, one refetch.
        assert site.dev.jwks_requests - before <= 3
        assert sessions_in(site) == 1
