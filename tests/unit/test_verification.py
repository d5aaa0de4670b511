"""The pure token checks: JWS headers, key sets, signatures and every claim rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fastapi_corpauth import InvalidToken, VerificationPolicy
from fastapi_corpauth._config import ASYMMETRIC_ALGORITHMS
from fastapi_corpauth._verification import (
    MAX_KEYS,
    KeySet,
    TokenRules,
    access_token_profile,
    at_hash,
    check_access_token,
    check_id_token,
    check_introspection,
    jws_header,
    verify_signature,
)
from fastapi_corpauth.devserver._jwt import SigningKey, sign_jwt
from tests.support import CLIENT_ID, ISSUER, OTHER_SIGNING_KEY, SIGNING_KEY

NOW = 1_700_000_000.0
RULES = TokenRules(issuer=ISSUER, client_ids=frozenset({CLIENT_ID}), leeway=10.0)
KEYCLOAK_HEADER = {"alg": "RS256", "typ": "JWT", "kid": SIGNING_KEY.kid}
RFC9068_HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": SIGNING_KEY.kid}


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def keycloak_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "exp": int(NOW + 300),
        "iat": int(NOW),
        "jti": "j-1",
        "iss": ISSUER,
        "aud": "account",
        "sub": "user-1",
        "typ": "Bearer",
        "azp": CLIENT_ID,
        "sid": "sso-1",
        "scope": "corp profile email",
        "preferred_username": "nino",
        "name": "Nino Beridze",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def rfc9068_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "exp": int(NOW + 300),
        "iat": int(NOW),
        "iss": ISSUER,
        "sub": "user-1",
        "client_id": CLIENT_ID,
        "aud": "bank-api",
        "scope": "corp",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def reason(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    with pytest.raises(InvalidToken) as caught:
        check_access_token(header, claims, rules=RULES, now=NOW)
    return caught.value.reason


def key_set(*keys: SigningKey) -> KeySet:
    return KeySet.from_jwks(
        {"keys": [k.public_jwk() for k in keys]}, algorithms=ASYMMETRIC_ALGORITHMS
    )


# --- jws_header -------------------------------------------------------------------------


def test_header_of_a_compact_jws() -> None:
    token = sign_jwt({"sub": "x"}, key=SIGNING_KEY)
    assert jws_header(token) == KEYCLOAK_HEADER


@pytest.mark.parametrize(
    "token",
    [
        "opaque-token-value",
        "a.b",
        "a.b.c.d.e",  # a JWE has five parts
        ".e30.x",
        b64({"typ": "JWT"}) + ".e30.x",  # no alg
        b64({"alg": 256}) + ".e30.x",
        b64([1, 2]) + ".e30.x",
        "!!!.e30.x",
        "é.e30.x",
        b64({"alg": "RS256"}) + "." + "a" * 20_000 + ".x",
    ],
)
def test_not_a_jws(token: str) -> None:
    assert jws_header(token) is None


def test_header_of_an_unsigned_token_is_still_read() -> None:
    # Reading is not trusting: the verifier refuses ``none`` before fetching any key.
    assert jws_header(b64({"alg": "none"}) + "." + b64({"sub": "x"}) + ".") == {"alg": "none"}


# --- KeySet ---------------------------------------------------------------------------------


def test_key_set_reads_keycloak_keys_and_drops_the_rest() -> None:
    signing = SIGNING_KEY.public_jwk()
    encryption = {**OTHER_SIGNING_KEY.public_jwk(), "kid": "enc", "use": "enc", "alg": "RSA-OAEP"}
    hmac_key = {"kid": "hmac", "kty": "oct", "k": b64(b"secret" * 8), "alg": "HS256"}
    wrong_ops = {**OTHER_SIGNING_KEY.public_jwk(), "kid": "ops", "key_ops": ["encrypt"]}
    broken = {"kid": "broken", "kty": "RSA", "alg": "RS256", "n": "!!", "e": "AQAB"}
    keys = KeySet.from_jwks(
        {"keys": [signing, encryption, hmac_key, wrong_ops, broken, "junk", {"kty": 7}]},
        algorithms=ASYMMETRIC_ALGORITHMS,
    )
    assert keys.kids == {SIGNING_KEY.kid}
    assert len(keys) == 1


def test_a_key_without_alg_serves_every_allowed_algorithm_of_its_type() -> None:
    jwk = SIGNING_KEY.public_jwk()
    del jwk["alg"]
    keys = KeySet.from_jwks({"keys": [jwk]}, algorithms=("RS256", "PS256", "ES256"))
    assert len(keys) == 2
    for alg in ("RS256", "PS256"):
        assert len(keys.candidates({"alg": alg, "kid": SIGNING_KEY.kid}) or []) == 1
    assert keys.candidates({"alg": "ES256", "kid": SIGNING_KEY.kid}) == []


def test_a_key_is_used_only_with_its_declared_algorithm() -> None:
    keys = key_set(SIGNING_KEY)
    assert keys.candidates({"alg": "PS256", "kid": SIGNING_KEY.kid}) == []
    assert keys.candidates({"alg": "RS256", "kid": "rotated-in"}) is None
    assert keys.candidates({"alg": "RS256", "kid": 7}) == []
    assert len(keys.candidates({"alg": "RS256"}) or []) == 1


def test_algorithms_outside_the_allow_list_are_never_loaded() -> None:
    keys = KeySet.from_jwks({"keys": [SIGNING_KEY.public_jwk()]}, algorithms=("ES256",))
    assert len(keys) == 0


def test_ec_keys_follow_their_curve() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    numbers = private.public_key().public_numbers()
    jwk = {
        "kid": "ec",
        "kty": "EC",
        "crv": "P-384",
        "x": b64(numbers.x.to_bytes(48, "big")),
        "y": b64(numbers.y.to_bytes(48, "big")),
    }
    keys = KeySet.from_jwks({"keys": [jwk]}, algorithms=ASYMMETRIC_ALGORITHMS)
    assert keys.candidates({"alg": "ES256", "kid": "ec"}) == []
    assert len(keys.candidates({"alg": "ES384", "kid": "ec"}) or []) == 1


@pytest.mark.parametrize("document", [None, [], {"keys": "x"}, {"other": []}, "text"])
def test_a_document_that_is_not_a_key_set(document: Any) -> None:
    with pytest.raises(ValueError, match="not a JWK set"):
        KeySet.from_jwks(document, algorithms=ASYMMETRIC_ALGORITHMS)


def test_only_the_first_keys_of_a_huge_set_are_read() -> None:
    jwk = SIGNING_KEY.public_jwk()
    many = [{**jwk, "kid": f"k{n}"} for n in range(MAX_KEYS + 50)]
    assert len(KeySet.from_jwks({"keys": many}, algorithms=("RS256",))) == MAX_KEYS


# --- verify_signature --------------------------------------------------------------------------


def only_key(keys: KeySet, header: Mapping[str, Any]) -> Any:
    candidates = keys.candidates(header)
    assert candidates is not None and len(candidates) == 1
    return candidates[0]


def test_a_genuine_signature_verifies() -> None:
    token = sign_jwt(keycloak_claims(), key=SIGNING_KEY)
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    assert verify_signature(token, key, algorithms=ASYMMETRIC_ALGORITHMS)["sub"] == "user-1"


def test_a_stranger_key_with_the_servers_kid_fails() -> None:
    impostor = SigningKey(kid=SIGNING_KEY.kid, private_key=OTHER_SIGNING_KEY.private_key)
    token = sign_jwt(keycloak_claims(), key=impostor)
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(token, key, algorithms=ASYMMETRIC_ALGORITHMS)
    assert caught.value.reason == "signature"


def test_a_rewritten_payload_fails() -> None:
    header, _, signature = sign_jwt(keycloak_claims(), key=SIGNING_KEY).split(".")
    forged = f"{header}.{b64(keycloak_claims(name='Forged CEO'))}.{signature}"
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(forged, key, algorithms=ASYMMETRIC_ALGORITHMS)
    assert caught.value.reason == "signature"


def test_hmac_signed_with_the_public_key_fails() -> None:
    public_pem = SIGNING_KEY.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'kid': SIGNING_KEY.kid})}.{b64(keycloak_claims())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(signature)}"
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(token, key, algorithms=("RS256", "HS256"))  # even if HS256 slipped in
    assert caught.value.reason == "algorithm"


def test_a_token_whose_claims_are_not_an_object() -> None:
    token = sign_jwt({"placeholder": 1}, key=SIGNING_KEY)
    header, _, _ = token.split(".")
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    for payload in (b"[1, 2]", b"not json", b"[" * 5000):
        signing_input = f"{header}.{b64(payload)}"
        signature = SIGNING_KEY.private_key.sign(signing_input.encode(), *_rs256_padding())
        with pytest.raises(InvalidToken) as caught:
            verify_signature(
                f"{signing_input}.{b64(signature)}", key, algorithms=ASYMMETRIC_ALGORITHMS
            )
        assert caught.value.reason == "malformed"


def _rs256_padding() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA256()


def test_a_short_rsa_key_is_refused() -> None:
    weak = SigningKey(
        kid="weak",
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    )
    with pytest.warns(UserWarning, match="1024 bits"):
        token = sign_jwt(keycloak_claims(), key=weak)
    keys = KeySet.from_jwks({"keys": [weak.public_jwk()]}, algorithms=ASYMMETRIC_ALGORITHMS)
    key = only_key(keys, {"alg": "RS256", "kid": "weak"})
    with pytest.raises(InvalidToken):
        verify_signature(token, key, algorithms=ASYMMETRIC_ALGORITHMS)


# --- access tokens ---------------------------------------------------------------------------


def test_a_keycloak_access_token_passes() -> None:
    verified = check_access_token(KEYCLOAK_HEADER, keycloak_claims(), rules=RULES, now=NOW)
    assert verified.subject == "user-1"
    assert verified.client_id == CLIENT_ID
    assert verified.expires_at == NOW + 300
    assert verified.scope == ("corp", "profile", "email")
    assert verified.session_id == "sso-1"
    assert verified.claims["name"] == "Nino Beridze"
    assert "user-1" in repr(verified) and "Nino" not in repr(verified)


def test_an_rfc9068_access_token_passes() -> None:
    verified = check_access_token(RFC9068_HEADER, rfc9068_claims(), rules=RULES, now=NOW)
    assert (verified.subject, verified.client_id) == ("user-1", CLIENT_ID)
    assert access_token_profile(RFC9068_HEADER, rfc9068_claims()) == "rfc9068"
    application_typed = {**RFC9068_HEADER, "typ": "application/at+jwt"}
    assert access_token_profile(application_typed, rfc9068_claims()) == "rfc9068"


@pytest.mark.parametrize(
    ("header", "claims", "expected"),
    [
        (KEYCLOAK_HEADER, keycloak_claims(typ="ID", aud=CLIENT_ID), "token_type"),
        (KEYCLOAK_HEADER, keycloak_claims(typ="Refresh"), "token_type"),
        (KEYCLOAK_HEADER, keycloak_claims(typ="Offline"), "token_type"),
        (KEYCLOAK_HEADER, keycloak_claims(typ=None), "token_type"),
        (KEYCLOAK_HEADER, keycloak_claims(typ=["Bearer"]), "token_type"),
        ({**KEYCLOAK_HEADER, "typ": "logout+jwt"}, keycloak_claims(), "token_type"),
        ({**KEYCLOAK_HEADER, "typ": 5}, keycloak_claims(), "token_type"),
        (RFC9068_HEADER, rfc9068_claims(iss=ISSUER + "X"), "issuer"),
        (KEYCLOAK_HEADER, keycloak_claims(iss="https://evil.example/realms/bog"), "issuer"),
        (KEYCLOAK_HEADER, keycloak_claims(iss=ISSUER + "x"), "issuer"),
        (KEYCLOAK_HEADER, keycloak_claims(iss=None), "issuer"),
        (KEYCLOAK_HEADER, keycloak_claims(azp="other-app"), "client"),
        (KEYCLOAK_HEADER, keycloak_claims(azp=None, aud=CLIENT_ID), "client"),
        (KEYCLOAK_HEADER, keycloak_claims(azp=CLIENT_ID + "x"), "client"),
        (RFC9068_HEADER, rfc9068_claims(client_id="other-app", aud=CLIENT_ID), "client"),
        (RFC9068_HEADER, rfc9068_claims(client_id=None, azp=CLIENT_ID), "client"),
        (KEYCLOAK_HEADER, keycloak_claims(exp=int(NOW - 10)), "expired"),
        (KEYCLOAK_HEADER, keycloak_claims(exp=None), "malformed"),
        (KEYCLOAK_HEADER, keycloak_claims(exp="2099"), "malformed"),
        (KEYCLOAK_HEADER, keycloak_claims(exp=True), "malformed"),
        (KEYCLOAK_HEADER, keycloak_claims(exp=10**400), "malformed"),
        (KEYCLOAK_HEADER, keycloak_claims(nbf=int(NOW + 11)), "not_yet_valid"),
        (
            KEYCLOAK_HEADER,
            keycloak_claims(preferred_username="service-account-corp-app"),
            "service_account",
        ),
        (KEYCLOAK_HEADER, keycloak_claims(clientId=CLIENT_ID), "service_account"),
        (KEYCLOAK_HEADER, keycloak_claims(client_id=CLIENT_ID), "service_account"),
        (RFC9068_HEADER, rfc9068_claims(sub=CLIENT_ID), "service_account"),
        (KEYCLOAK_HEADER, keycloak_claims(sub=None), "subject"),
        (KEYCLOAK_HEADER, keycloak_claims(sub=""), "subject"),
        (KEYCLOAK_HEADER, keycloak_claims(sub=7), "subject"),
    ],
)
def test_access_token_refusals(
    header: dict[str, Any], claims: dict[str, Any], expected: str
) -> None:
    assert reason(header, claims) == expected


def test_leeway_bounds_are_exact() -> None:
    # Expired once now - leeway reaches exp; not yet valid while now + leeway < nbf.
    assert reason(KEYCLOAK_HEADER, keycloak_claims(exp=int(NOW - 10))) == "expired"
    check_access_token(KEYCLOAK_HEADER, keycloak_claims(exp=NOW - 9.5), rules=RULES, now=NOW)
    check_access_token(KEYCLOAK_HEADER, keycloak_claims(nbf=NOW + 10), rules=RULES, now=NOW)
    strict = TokenRules(issuer=ISSUER, client_ids=RULES.client_ids, leeway=0)
    with pytest.raises(InvalidToken, match="expired"):
        check_access_token(KEYCLOAK_HEADER, keycloak_claims(exp=NOW), rules=strict, now=NOW)


def test_a_trailing_slash_on_either_issuer_is_the_same_issuer() -> None:
    check_access_token(KEYCLOAK_HEADER, keycloak_claims(iss=ISSUER + "/"), rules=RULES, now=NOW)
    slashed = TokenRules(issuer=ISSUER + "/", client_ids=RULES.client_ids)
    check_access_token(KEYCLOAK_HEADER, keycloak_claims(), rules=slashed, now=NOW)


def test_any_of_several_accepted_clients() -> None:
    rules = TokenRules(issuer=ISSUER, client_ids=frozenset({CLIENT_ID, "desktop-app"}))
    verified = check_access_token(
        KEYCLOAK_HEADER, keycloak_claims(azp="desktop-app"), rules=rules, now=NOW
    )
    assert verified.client_id == "desktop-app"


def test_a_jwt_of_no_access_token_profile_is_unknown() -> None:
    assert access_token_profile({"alg": "RS256"}, {"sub": "x"}) is None
    assert access_token_profile({"alg": "RS256", "typ": "jwt"}, {"typ": "bearer"}) == "keycloak"


# --- introspection -----------------------------------------------------------------------------


def introspected(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "active": True,
        "client_id": CLIENT_ID,
        "username": "nino",
        "sub": "user-1",
        "token_type": "Bearer",
        "exp": int(NOW + 300),
        "scope": "corp",
    }
    answer.update(changes)
    return {k: v for k, v in answer.items() if v is not None}


def introspection_reason(answer: dict[str, Any]) -> str:
    with pytest.raises(InvalidToken) as caught:
        check_introspection(answer, rules=RULES, now=NOW)
    return caught.value.reason


def test_an_active_token_of_this_client_passes_introspection() -> None:
    verified = check_introspection(introspected(), rules=RULES, now=NOW)
    assert (verified.subject, verified.client_id, verified.method) == (
        "user-1",
        CLIENT_ID,
        "introspection",
    )
    assert verified.claims["preferred_username"] == "nino"


def test_an_answer_with_only_the_standard_fields_passes() -> None:
    # django-oauth-toolkit: no sub, a username, no token_type.
    answer = {"active": True, "client_id": CLIENT_ID, "username": "nino", "scope": "corp"}
    verified = check_introspection(answer, rules=RULES, now=NOW)
    assert verified.subject == "nino"
    assert verified.expires_at is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (introspected(active=False), "inactive"),
        (introspected(active="true"), "inactive"),
        ({"client_id": CLIENT_ID, "username": "nino"}, "inactive"),
        (introspected(client_id="other-app"), "client"),
        (introspected(client_id=None), "client"),
        (introspected(token_type="refresh_token"), "token_type"),
        (introspected(typ="Refresh"), "token_type"),
        (introspected(typ="ID"), "token_type"),
        (introspected(iss="https://evil.example"), "issuer"),
        (introspected(exp=int(NOW - 60)), "expired"),
        (introspected(nbf=int(NOW + 60)), "not_yet_valid"),
        (introspected(username="service-account-corp-app"), "service_account"),
        (introspected(sub=CLIENT_ID), "service_account"),
        (introspected(sub=None, username=None), "service_account"),
    ],
)
def test_introspection_refusals(answer: dict[str, Any], expected: str) -> None:
    assert introspection_reason(answer) == expected


# --- ID tokens ----------------------------------------------------------------------------------

ACCESS_TOKEN = "header.payload.signature"


def id_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "exp": int(NOW + 300),
        "iat": int(NOW),
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "user-1",
        "typ": "ID",
        "azp": CLIENT_ID,
        "nonce": "nonce-1",
        "at_hash": at_hash(ACCESS_TOKEN, "RS256"),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def check_id(claims: dict[str, Any], *, nonce: str | None = "nonce-1") -> None:
    check_id_token(
        {"alg": "RS256"},
        claims,
        rules=RULES,
        client_id=CLIENT_ID,
        nonce=nonce,
        access_token=ACCESS_TOKEN,
        subject="user-1",
        now=NOW,
    )


def test_a_matching_id_token_passes() -> None:
    check_id(id_claims())
    check_id(id_claims(azp=None, at_hash=None))
    check_id(id_claims(aud=[CLIENT_ID]), nonce="nonce-1")


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (id_claims(nonce="nonce-2"), "nonce"),
        (id_claims(nonce=None), "nonce"),
        (id_claims(typ="Bearer"), "id_token"),
        (id_claims(aud="other-app", azp=None), "id_token"),
        (id_claims(aud=[CLIENT_ID, "other-app"], azp=None), "id_token"),
        (id_claims(azp="other-app"), "id_token"),
        (id_claims(aud=None), "id_token"),
        (id_claims(sub="user-2"), "id_token"),
        (id_claims(at_hash=at_hash("another.access.token", "RS256")), "id_token"),
        (id_claims(iss="https://evil.example"), "issuer"),
        (id_claims(exp=int(NOW - 60)), "expired"),
    ],
)
def test_id_token_refusals(claims: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        check_id(claims)
    assert caught.value.reason == expected


def test_at_hash_follows_the_algorithm() -> None:
    # OIDC Core §3.1.3.6: left half of the hash of the ASCII token, base64url.
    digest = hashlib.sha384(b"token").digest()
    expected = base64.urlsafe_b64encode(digest[:24]).rstrip(b"=").decode()
    assert at_hash("token", "ES384") == expected
    assert len(at_hash("token", "RS256")) == 22
    assert (
        at_hash("token", "EdDSA")
        == base64.urlsafe_b64encode(hashlib.sha512(b"token").digest()[:32]).rstrip(b"=").decode()
    )


# --- policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [("none",), ("HS256",), ("RS256", "HS512"), ()])
def test_the_policy_refuses_symmetric_or_no_algorithms(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        VerificationPolicy(algorithms=algorithms)


def test_the_policy_refuses_negative_times() -> None:
    with pytest.raises(ValueError, match="negative"):
        VerificationPolicy(leeway=-1)


# --- edges that each check stands for -----------------------------------------------------


def test_a_key_outside_the_allowed_algorithms_does_not_verify() -> None:
    # The allow-list binds even a key loaded for another algorithm.
    token = sign_jwt(keycloak_claims(), key=SIGNING_KEY)
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(token, key, algorithms=("ES256",))
    assert caught.value.reason == "algorithm"


@pytest.mark.parametrize("token", ["not-a-jws", "a.b.c", b64({"alg": "RS256"}) + ".e30"])
def test_a_token_that_is_not_a_jws_is_malformed(token: str) -> None:
    key = only_key(key_set(SIGNING_KEY), KEYCLOAK_HEADER)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(token, key, algorithms=ASYMMETRIC_ALGORITHMS)
    assert caught.value.reason == "malformed"


def test_a_claim_type_that_is_not_bearer_is_refused_by_the_profile_itself() -> None:
    for claim_type in ("Refresh", "ID", 1):
        with pytest.raises(InvalidToken) as caught:
            access_token_profile(KEYCLOAK_HEADER, keycloak_claims(typ=claim_type))
        assert caught.value.reason == "token_type"


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_times_that_are_not_finite_are_malformed(name: str, value: float) -> None:
    # json.loads reads NaN and Infinity: they are numbers no comparison can decide.
    assert reason(KEYCLOAK_HEADER, keycloak_claims(**{name: value})) == "malformed"


def test_a_claim_with_a_lone_surrogate_never_matches() -> None:
    # JSON can carry "\ud800"; comparing it must refuse the token, not crash.
    lone = json.loads('"\\ud800"')
    assert reason(KEYCLOAK_HEADER, keycloak_claims(iss=lone)) == "issuer"
    assert reason(KEYCLOAK_HEADER, keycloak_claims(azp=CLIENT_ID + lone)) == "client"


def test_a_verified_access_token_says_what_vouched_for_it() -> None:
    verified = check_access_token(
        KEYCLOAK_HEADER, keycloak_claims(iss=ISSUER + "/"), rules=RULES, now=NOW
    )
    assert verified.issuer == ISSUER
    assert verified.issued_at == NOW
    assert verified.method == "jwt"
    assert verified.expires_at == NOW + 300
    assert dict(verified.claims) == keycloak_claims(iss=ISSUER + "/")
    untimed = check_access_token(KEYCLOAK_HEADER, keycloak_claims(iat=None), rules=RULES, now=NOW)
    assert untimed.issued_at is None


def test_a_verified_introspection_answer_says_what_vouched_for_it() -> None:
    verified = check_introspection(introspected(iat=int(NOW - 5)), rules=RULES, now=NOW)
    assert verified.issuer == ISSUER
    assert verified.expires_at == NOW + 300
    assert verified.issued_at == NOW - 5
    assert verified.scope == ("corp",)
    assert verified.claims["username"] == "nino"


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "access_token", "ACCESS_TOKEN"])
def test_introspection_token_types_of_an_access_token(token_type: str) -> None:
    check_introspection(introspected(token_type=token_type), rules=RULES, now=NOW)


@pytest.mark.parametrize("claim_type", ["Bearer", "bearer", "BEARER"])
def test_introspection_claim_type_bearer_in_any_case(claim_type: str) -> None:
    check_introspection(introspected(typ=claim_type), rules=RULES, now=NOW)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (introspected(token_type=7), "token_type"),
        (introspected(typ=["Bearer"]), "token_type"),
        (introspected(iss=7), "issuer"),
        (introspected(iss=ISSUER + "x"), "issuer"),
        (introspected(sub="", username=None), "service_account"),
        (introspected(sub=None, username=""), "service_account"),
        (introspected(sub=None, username=7), "service_account"),
        (introspected(exp="soon"), "malformed"),
    ],
)
def test_more_introspection_refusals(answer: dict[str, Any], expected: str) -> None:
    assert introspection_reason(answer) == expected


def test_introspection_names_the_issuer_only_when_it_says_one() -> None:
    # Keycloak's answer carries "iss"; a standard one need not. Either way the server
    # vouches for the token, and a named issuer must be ours.
    assert check_introspection(introspected(iss=ISSUER), rules=RULES, now=NOW).issuer == ISSUER
    assert check_introspection(introspected(iss=ISSUER + "/"), rules=RULES, now=NOW)
    assert check_introspection(introspected(), rules=RULES, now=NOW).expires_at == NOW + 300
    untimed = check_introspection(introspected(exp=None), rules=RULES, now=NOW)
    assert untimed.expires_at is None


def test_introspection_keeps_a_preferred_username_it_was_given() -> None:
    answer = introspected(preferred_username="nino.b")
    assert check_introspection(answer, rules=RULES, now=NOW).claims["preferred_username"] == (
        "nino.b"
    )
    no_name = check_introspection(introspected(username=None), rules=RULES, now=NOW)
    assert "preferred_username" not in no_name.claims
    assert no_name.subject == "user-1"


def test_an_id_token_must_expire() -> None:
    with pytest.raises(InvalidToken) as caught:
        check_id(id_claims(exp=None))
    assert caught.value.reason == "malformed"


def test_at_hash_keeps_every_character_of_the_digest() -> None:
    # The half-digest of "token-11" under SHA-384 ends in "X": nothing is stripped but "=".
    assert at_hash("token-11", "ES384") == "TPkN32AHaPTydDqZxS4GhkmgmWTsB6NX"
    for algorithm, digest in (("RS512", hashlib.sha512), ("PS256", hashlib.sha256)):
        half = digest(b"token-11").digest()
        expected = base64.urlsafe_b64encode(half[: len(half) // 2]).rstrip(b"=").decode()
        assert at_hash("token-11", algorithm) == expected


def test_a_configured_issuer_one_character_longer_is_another_issuer() -> None:
    longer = TokenRules(issuer=ISSUER + "X", client_ids=RULES.client_ids)
    with pytest.raises(InvalidToken) as caught:
        check_access_token(KEYCLOAK_HEADER, keycloak_claims(), rules=longer, now=NOW)
    assert caught.value.reason == "issuer"


def test_introspection_subject_falls_back_to_the_username_unless_sub_is_a_string() -> None:
    verified = check_introspection(introspected(sub=7), rules=RULES, now=NOW)
    assert verified.subject == "nino"


def test_keys_for_encryption_or_other_operations_are_dropped() -> None:
    jwk = SIGNING_KEY.public_jwk()
    del jwk["alg"]
    dropped = [
        {**jwk, "use": "enc"},
        {**jwk, "key_ops": ["encrypt"]},
        {**jwk, "key_ops": "verify"},  # not a list
    ]
    for entry in dropped:
        assert len(KeySet.from_jwks({"keys": [entry]}, algorithms=("RS256",))) == 0
    for entry in ({**jwk, "use": "sig"}, {**jwk, "key_ops": ["sign", "verify"]}):
        assert len(KeySet.from_jwks({"keys": [entry]}, algorithms=("RS256",))) == 1


def test_a_key_without_alg_is_loaded_for_each_algorithm() -> None:
    jwk = SIGNING_KEY.public_jwk()
    del jwk["alg"]
    keys = KeySet.from_jwks({"keys": [jwk]}, algorithms=("RS256", "PS256"))
    for alg in ("RS256", "PS256"):
        assert only_key(keys, {"alg": alg, "kid": SIGNING_KEY.kid}).algorithm_name == alg
    token = sign_jwt(keycloak_claims(), key=SIGNING_KEY, algorithm="PS256")
    key = only_key(keys, {"alg": "PS256", "kid": SIGNING_KEY.kid})
    assert verify_signature(token, key, algorithms=("PS256",))["sub"] == "user-1"


def test_an_ec_key_declaring_another_curves_algorithm_is_dropped() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {
        "kid": "ec",
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES384",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }
    assert len(KeySet.from_jwks({"keys": [jwk]}, algorithms=ASYMMETRIC_ALGORITHMS)) == 0


def test_a_kid_that_is_not_a_string_is_no_kid() -> None:
    keys = KeySet.from_jwks(
        {"keys": [{**SIGNING_KEY.public_jwk(), "kid": 5}]}, algorithms=ASYMMETRIC_ALGORITHMS
    )
    assert keys.kids == frozenset({None})
    assert repr(keys) == "KeySet(kids=[])"
    assert len(keys.candidates({"alg": "RS256"}) or []) == 1


def test_a_key_set_names_its_kids() -> None:
    keys = key_set(SIGNING_KEY, OTHER_SIGNING_KEY)
    assert repr(keys) == f"KeySet(kids={sorted([SIGNING_KEY.kid, OTHER_SIGNING_KEY.kid])!r})"


def test_an_algorithm_that_is_not_a_string_has_no_key() -> None:
    assert key_set(SIGNING_KEY).candidates({"alg": ["RS256"], "kid": SIGNING_KEY.kid}) == []


@pytest.mark.parametrize(
    "token",
    [
        b64({"alg": "RS256"}) + ".e30",  # two parts
        b64({"alg": "RSA-OAEP", "enc": "A256GCM"}) + ".a.b.c.d",  # a JWE
        b64({"alg": "RS256"}) + "..sig",  # no payload
    ],
)
def test_a_readable_header_is_not_enough(token: str) -> None:
    assert jws_header(token) is None


def test_the_longest_token_looked_at() -> None:
    prefix = b64({"alg": "RS256"}) + "."
    longest = prefix + "a" * (16_384 - len(prefix) - 2) + ".x"
    assert len(longest) == 16_384
    assert jws_header(longest) == {"alg": "RS256"}
    assert jws_header(longest[:-1] + "xy") is None
