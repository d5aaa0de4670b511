"""Pure helpers of the devserver: JWTs, Basic decoding per flavour, state and fault plans."""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import FrozenInstanceError, replace
from urllib.parse import quote_plus

import pytest

from fastapi_corpauth import CorpAuthSettings
from fastapi_corpauth.devserver import (
    DEFAULT_USERS,
    FLAVOURS,
    DevClient,
    DevServerState,
    DevUser,
    FaultPlan,
    Flavour,
    create_devserver,
)
from fastapi_corpauth.devserver.__main__ import (
    banner,
    build_app,
    build_parser,
    main,
    public_url,
    settings_lines,
)
from fastapi_corpauth.devserver._authorize import (
    append_query,
    is_local_url,
    pkce_challenge,
    pkce_matches,
    redirect_uri_allowed,
    resolve_locale,
    valid_pkce_value,
)
from fastapi_corpauth.devserver._basic import (
    ClientAuthParseError,
    form_urldecode_strict,
    parse_basic_credentials,
)
from fastapi_corpauth.devserver._jwt import (
    InvalidJWT,
    SigningKey,
    b64url_encode,
    sign_hmac_jwt,
    sign_jwt,
    verify_hmac_jwt,
    verify_jwt,
)
from fastapi_corpauth.devserver._pages import origin_of
from fastapi_corpauth.devserver._sessions import ExpiringStore
from fastapi_corpauth.devserver._state import DEFAULT_ACCOUNTS
from tests.support import OTHER_SIGNING_KEY, SIGNING_KEY, FakeClock

KEY = SIGNING_KEY
OTHER_KEY = OTHER_SIGNING_KEY
SPECIAL_SECRET = "a+b%c:d é ✓"


def basic_header(client_id: str, secret: str, *, rfc_encode: bool) -> str:
    if rfc_encode:
        client_id, secret = quote_plus(client_id, safe=""), quote_plus(secret, safe="")
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def make_state(
    *, flavour: str = "modern", clock: FakeClock | None = None, lifetime: float = 60.0
) -> DevServerState:
    return DevServerState(
        realm="bog",
        clients=[DevClient(client_id="corp-app", client_secret="dev-secret")],
        flavour=FLAVOURS[flavour],
        token_lifetime=lifetime,
        clock=clock or FakeClock(1_700_000_000.5),
        signing_key=KEY,
        accounts=DEFAULT_ACCOUNTS,
    )


# --- JWT -------------------------------------------------------------------------------------


def test_jwt_round_trip_and_header() -> None:
    token = sign_jwt({"sub": "x", "n": 1}, key=KEY)
    header_segment = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": KEY.kid}
    assert "=" not in token
    assert verify_jwt(token, keys=[KEY]) == {"sub": "x", "n": 1}


def test_public_jwk_is_the_rsa_public_key_only() -> None:
    jwk = KEY.public_jwk()
    assert jwk["kid"] == KEY.kid
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    assert set(jwk) == {"kid", "kty", "alg", "use", "n", "e"}  # no private parts


def test_jwt_wrong_key_is_rejected() -> None:
    token = sign_jwt({"sub": "x"}, key=KEY)
    impostor = SigningKey(kid=KEY.kid, private_key=OTHER_KEY.private_key)
    with pytest.raises(InvalidJWT):
        verify_jwt(token, keys=[impostor])
    with pytest.raises(InvalidJWT, match="unknown key"):
        verify_jwt(token, keys=[OTHER_KEY])


def test_jwt_tampered_payload_is_rejected() -> None:
    header, _, signature = sign_jwt({"sub": "x"}, key=KEY).split(".")
    forged = b64url_encode(json.dumps({"sub": "admin"}).encode())
    with pytest.raises(InvalidJWT):
        verify_jwt(f"{header}.{forged}.{signature}", keys=[KEY])


def test_jwt_alg_none_and_hmac_are_rejected() -> None:
    payload = b64url_encode(json.dumps({"sub": "x"}).encode())
    for alg in ("none", "HS256"):
        header = b64url_encode(json.dumps({"alg": alg, "typ": "JWT", "kid": KEY.kid}).encode())
        with pytest.raises(InvalidJWT):
            verify_jwt(f"{header}.{payload}.", keys=[KEY])


@pytest.mark.parametrize(
    "garbage", ["", "abc", "a.b", "a.b.c.d", "é.é.é", "!!!.???.***", "e30.e30.e30"]
)
def test_jwt_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(InvalidJWT):
        verify_jwt(garbage, keys=[KEY])


def test_refresh_tokens_are_hmac_signed_with_the_realm_secret() -> None:
    secret = b"s" * 64
    token = sign_hmac_jwt({"typ": "Refresh", "sub": "x"}, secret=secret, kid="hmac")
    assert jwt_header(token)["alg"] == "HS512"
    assert verify_hmac_jwt(token, secret=secret) == {"typ": "Refresh", "sub": "x"}
    with pytest.raises(InvalidJWT):
        verify_hmac_jwt(token, secret=b"t" * 64)
    with pytest.raises(InvalidJWT):
        verify_jwt(token, keys=[KEY])


def jwt_header(token: str) -> dict[str, str]:
    segment = token.split(".")[0]
    header: dict[str, str] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


# --- Basic decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [("a+b", "a b"), ("a%2Bb", "a+b"), ("%C3%A9", "é"), ("%3a", ":"), ("plain", "plain")],
)
def test_form_urldecode_like_java(encoded: str, decoded: str) -> None:
    assert form_urldecode_strict(encoded) == decoded


@pytest.mark.parametrize("malformed", ["%", "a%2", "%zz", "100%", "%-1"])
def test_form_urldecode_rejects_malformed_escapes_like_java(malformed: str) -> None:
    with pytest.raises(ClientAuthParseError):
        form_urldecode_strict(malformed)


def test_basic_rfc_encoded_special_secret_is_decoded_by_modern_keycloak() -> None:
    header = basic_header("corp:app", SPECIAL_SECRET, rfc_encode=True)
    assert parse_basic_credentials(header, url_decode=True) == ("corp:app", SPECIAL_SECRET)


def test_basic_rfc_encoded_secret_stays_encoded_on_legacy_keycloak() -> None:
    header = basic_header("corp-app", SPECIAL_SECRET, rfc_encode=True)
    assert parse_basic_credentials(header, url_decode=False) == (
        "corp-app",
        quote_plus(SPECIAL_SECRET, safe=""),
    )


def test_basic_raw_secret_works_only_on_legacy_keycloak() -> None:
    header = basic_header("corp-app", "a+b:c é", rfc_encode=False)
    assert parse_basic_credentials(header, url_decode=False) == ("corp-app", "a+b:c é")
    assert parse_basic_credentials(header, url_decode=True) == ("corp-app", "a b:c é")


def test_basic_raw_percent_breaks_modern_keycloak() -> None:
    header = basic_header("corp-app", "100%", rfc_encode=False)
    with pytest.raises(ClientAuthParseError):
        parse_basic_credentials(header, url_decode=True)
    assert parse_basic_credentials(header, url_decode=False) == ("corp-app", "100%")


@pytest.mark.parametrize(
    "header", ["Negotiate abc", "Bearer x", "Basic " + base64.b64encode(b"no-colon").decode()]
)
def test_basic_unusable_header_is_none(header: str) -> None:
    assert parse_basic_credentials(header, url_decode=True) is None


def test_basic_scheme_is_case_insensitive() -> None:
    header = "bAsIc " + base64.b64encode(b"id:secret").decode()
    assert parse_basic_credentials(header, url_decode=True) == ("id", "secret")


@pytest.mark.parametrize("header", ["Basic a", "Basic é"])
def test_basic_undecodable_base64_is_a_parse_error(header: str) -> None:
    with pytest.raises(ClientAuthParseError):
        parse_basic_credentials(header, url_decode=True)


# --- flavours ----------------------------------------------------------------------------------


def test_flavour_table_matches_keycloak_texts() -> None:
    assert set(FLAVOURS) >= {"modern", "legacy", "no-expires-in", "invalid-client-400"}
    modern, legacy = FLAVOURS["modern"], FLAVOURS["legacy"]
    assert (modern.token_type, legacy.token_type) == ("Bearer", "bearer")
    assert (modern.basic_url_decode, legacy.basic_url_decode) == (True, False)
    assert (modern.refresh_tokens, legacy.refresh_tokens) == (False, True)
    assert (modern.wrong_secret_status, modern.wrong_secret_error) == (401, "unauthorized_client")
    assert modern.wrong_secret_description == "Invalid client or Invalid client credentials"
    assert (modern.unknown_client_status, modern.unknown_client_error) == (401, "invalid_client")
    assert legacy.wrong_secret_description == "Invalid client secret"
    assert (legacy.unknown_client_status, legacy.unknown_client_error) == (
        400,
        "unauthorized_client",
    )
    assert legacy.unknown_client_description == "Invalid client credentials"
    assert FLAVOURS["no-expires-in"].include_expires_in is False
    assert FLAVOURS["invalid-client-400"].wrong_secret_status == 400
    assert FLAVOURS["invalid-client-400"].wrong_secret_error == "invalid_client"
    assert (modern.scope_extra, legacy.scope_extra) == (("profile", "email"), ())
    for name, flavour in FLAVOURS.items():
        assert flavour.name == name


def test_flavours_are_immutable() -> None:
    with pytest.raises(FrozenInstanceError):
        FLAVOURS["modern"].token_type = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FLAVOURS["new"] = Flavour(name="new")  # type: ignore[index]


# --- fault plans -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"status": 99},
        {"status": 600},
        {"status": 500, "count": 0},
        {"latency": -1.0},
        {"status": 500, "expired_token": True},
        {"retry_after": 5},
        {"body_kind": "xml"},
    ],
)
def test_fault_plan_rejects_meaningless_plans(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultPlan(**kwargs)  # type: ignore[arg-type]


def test_fault_plan_counts_down_then_clears() -> None:
    state = make_state()
    state.set_faults(status=503, count=2)
    assert state.take_fault() is not None
    assert state.take_fault() is not None
    assert state.take_fault() is None
    assert state.faults is None


def test_fault_plan_without_count_persists_until_cleared() -> None:
    state = make_state()
    plan = state.set_faults(latency=0.5)
    assert [state.take_fault() for _ in range(5)] == [plan] * 5
    state.clear_faults()
    assert state.take_fault() is None


# --- state: expiry and revocation --------------------------------------------------------------


def issue(state: DevServerState) -> str:
    client = state.clients["corp-app"]
    return state.issue_client_credentials(client, issuer="http://dev/realms/bog").access_token


def test_token_expires_by_the_injected_clock() -> None:
    clock = FakeClock(1_700_000_000.5)
    state = make_state(clock=clock, lifetime=60)
    token = issue(state)
    clock.now += 59.9
    assert isinstance(state.check_access_token(token), dict)
    clock.now += 0.1
    assert state.check_access_token(token) == "Token expired"


def test_push_revokes_tokens_of_the_same_second_but_not_later_ones() -> None:
    clock = FakeClock(1_700_000_000.5)
    state = make_state(clock=clock)
    before = issue(state)
    state.push_not_before()
    after = issue(state)
    assert state.check_access_token(before) == "Stale token"
    assert isinstance(state.check_access_token(after), dict)
    assert state.not_before == clock.now
    assert state.not_before_policy == int(clock.now)


def test_expiry_is_reported_before_revocation() -> None:
    clock = FakeClock(1_700_000_000.5)
    state = make_state(clock=clock)
    token = issue(state)
    state.push_not_before()
    clock.now += 3600
    assert state.check_access_token(token) == "Token expired"


def test_token_of_a_sibling_server_with_the_same_key_uses_its_claims() -> None:
    clock = FakeClock(1_700_000_000.5)
    issuer_state, verifier_state = make_state(clock=clock), make_state(clock=clock)
    token = issue(issuer_state)
    assert isinstance(verifier_state.check_access_token(token), dict)
    clock.now += 1
    verifier_state.push_not_before()
    assert verifier_state.check_access_token(token) == "Stale token"
    clock.now += 3600
    assert verifier_state.check_access_token(token) == "Token expired"


def test_legacy_refresh_token_is_not_an_access_token() -> None:
    state = make_state(flavour="legacy")
    issued = state.issue_client_credentials(state.clients["corp-app"], issuer="http://dev")
    assert issued.refresh_token is not None
    assert issued.session_state is not None
    assert issued.refresh_expires_in == 60
    assert state.check_access_token(issued.refresh_token) == "Invalid token"


def test_registry_forgets_expired_tokens_only() -> None:
    clock = FakeClock(1_700_000_000.5)
    state = make_state(clock=clock, lifetime=10)
    old_tokens = [issue(state) for _ in range(1100)]
    clock.now += 11
    fresh = issue(state)
    assert len(state._issued) == 1
    assert isinstance(state.check_access_token(fresh), dict)
    assert state.check_access_token(old_tokens[0]) == "Token expired"


def test_counters_reset() -> None:
    state = make_state()
    issue(state)
    state.token_requests, state.api_requests, state.api_rejections = 3, 2, 1
    state.reset_counters()
    assert (state.token_requests, state.tokens_issued, state.api_requests) == (0, 0, 0)
    assert state.api_rejections == 0


def test_duplicate_client_ids_are_refused() -> None:
    client = DevClient(client_id="a", client_secret="b")
    with pytest.raises(ValueError, match="unique"):
        create_devserver(clients=[client, client])


def test_unknown_flavour_name_is_refused() -> None:
    with pytest.raises(KeyError):
        create_devserver(flavour="keycloak-1")


def test_custom_flavour_object_is_accepted() -> None:
    custom = Flavour(name="custom", token_type="BEARER")
    app = create_devserver(flavour=custom)
    assert app.state.devserver.flavour is custom


# --- command line ------------------------------------------------------------------------------


def test_cli_parses_clients_and_flavour() -> None:
    args = build_parser().parse_args(
        ["--flavour", "legacy", "--client", "a:b:c", "--client", "x:y", "--token-lifetime", "5"]
    )
    assert args.flavour == "legacy"
    assert args.token_lifetime == 5.0
    assert args.clients == [
        DevClient(client_id="a", client_secret="b:c"),
        DevClient(client_id="x", client_secret="y"),
    ]
    state = build_app(args).state.devserver
    assert set(state.clients) == {"a", "x"}
    assert state.flavour is FLAVOURS["legacy"]


def test_cli_rejects_a_client_without_secret() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--client", "no-secret"])


def test_cli_defaults_and_path_prefix() -> None:
    args = build_parser().parse_args(["--path-prefix", "/auth/"])
    app = build_app(args)
    state = app.state.devserver
    assert set(state.clients) == {"corp-app", "other-app"}
    assert [getattr(route, "path", None) for route in app.routes][-1] == "/auth"


# --- browser flow helpers ----------------------------------------------------------------------


def test_bank_docs_flavour_is_legacy_with_query_implicit() -> None:
    legacy, bank_docs = FLAVOURS["legacy"], FLAVOURS["bank-docs"]
    assert bank_docs.implicit_query_allowed is True
    assert not any(f.implicit_query_allowed for name, f in FLAVOURS.items() if name != "bank-docs")
    assert replace(bank_docs, name="legacy", implicit_query_allowed=False) == legacy


@pytest.mark.parametrize(
    ("kc_locale", "ui_locales", "expected"),
    [
        (None, None, "en"),
        ("ka", None, "ka"),
        ("KA", None, "ka"),
        ("ka_GE", None, "ka"),
        (None, "ka", "ka"),
        (None, "de ka-GE", "ka"),
        (None, "de fr", "en"),
        ("en", "ka", "en"),
        ("de", "ka", "ka"),
        ("", "ka", "ka"),
    ],
)
def test_locale_resolution_follows_keycloak(
    kc_locale: str | None, ui_locales: str | None, expected: str
) -> None:
    assert resolve_locale(kc_locale, ui_locales) == expected


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/auth/callback", True),
        ("http://127.0.0.1/cb?x=1", True),
        ("https://localhost:65535/", True),
        ("http://[::1]:8080/cb", True),
        ("http://127.0.0.1.example.com/cb", False),
        ("http://localhost.evil/cb", False),
        ("http://user:pw@127.0.0.1/cb", False),
        ("http://127.0.0.1:8000/cb#x", False),
        ("http://127.0.0.1:8000/cb#", False),
        ("http://127.0.0.1:port/cb", False),
        ("http://127.0.0.1/c b", False),
        ("javascript://127.0.0.1/%0aalert(1)", False),
        ("//127.0.0.1/cb", False),
        ("", False),
    ],
)
def test_local_redirect_uris(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_registered_redirect_uris_match_exactly() -> None:
    client = DevClient(client_id="c", public=True, redirect_uris=("https://app.example/cb",))
    assert redirect_uri_allowed(client, "https://app.example/cb")
    assert not redirect_uri_allowed(client, "https://app.example/cb/")
    assert not redirect_uri_allowed(client, "https://app.example/cb?x=1")
    assert not redirect_uri_allowed(client, "http://127.0.0.1/cb")
    assert redirect_uri_allowed(DevClient(client_id="d"), "http://127.0.0.1:1234/cb")


def test_pkce_rfc7636_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_challenge(verifier) == challenge
    assert pkce_matches(verifier, challenge)
    assert not pkce_matches(verifier[:-1] + "l", challenge)
    assert not pkce_matches("short", pkce_challenge("short"))
    assert valid_pkce_value("a" * 43) and valid_pkce_value("~._-" * 32)
    assert not valid_pkce_value("a" * 42) and not valid_pkce_value("a" * 129)
    assert not valid_pkce_value("a" * 42 + "+")


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("http://h/cb", [("a", "1")], "http://h/cb?a=1"),
        ("http://h/cb?x=1", [("a", "1 2")], "http://h/cb?x=1&a=1+2"),
        ("http://h/cb?", [("a", "&")], "http://h/cb?a=%26"),
        ("http://h/cb", [], "http://h/cb"),
    ],
)
def test_append_query(url: str, params: list[tuple[str, str]], expected: str) -> None:
    assert append_query(url, params) == expected


def test_expiring_store_single_use_and_expiry() -> None:
    clock = FakeClock(1_700_000_000.5)
    store: ExpiringStore[str] = ExpiringStore(clock)
    key = store.add("value", lifetime=10)
    assert len(key) >= 40
    assert store.get(key) == "value"
    assert store.pop(key) == "value"
    assert store.pop(key) is None
    key = store.add("value", lifetime=10)
    clock.now += 10
    assert store.get(key) is None
    assert len(store) == 0
    assert store.add("x", lifetime=1, key="fixed") == "fixed"


def test_origin_for_csp() -> None:
    assert origin_of("http://127.0.0.1:8000/cb?x=1") == "http://127.0.0.1:8000"
    assert origin_of("https://app.example/cb") == "https://app.example"
    assert origin_of("http://[::1]:80/cb") == "http://[::1]:80"
    assert origin_of("https://a.example;script-src */cb") is None
    assert origin_of("ftp://a.example/") is None


def test_dev_users_and_clients() -> None:
    assert [user.username for user in DEFAULT_USERS] == ["demo"]
    assert DEFAULT_USERS[0].password == "demo"
    assert DEFAULT_USERS[0].company
    user = DevUser(username="u", password="p")
    assert user.subject == DevUser(username="u", password="other").subject
    assert DevUser(username="u", password="p", user_id="id-1").subject == "id-1"
    client = DevClient(client_id="public", public=True)
    assert (client.client_secret, client.implicit_enabled, client.redirect_uris) == ("", True, ())


def test_state_authenticates_users_and_refuses_duplicates() -> None:
    state = make_state()
    assert state.authenticate_user("demo", "demo") == DEFAULT_USERS[0]
    assert state.authenticate_user("demo", "Demo") is None
    assert state.authenticate_user("nobody", "demo") is None
    user = DevUser(username="u", password="p")
    with pytest.raises(ValueError, match="unique"):
        create_devserver(users=[user, user])
    with pytest.raises(ValueError, match="negative"):
        create_devserver(implicit_token_lifetime=-1)


def test_new_counters_are_in_stats_and_reset() -> None:
    state = make_state()
    state.authorize_requests, state.logins, state.login_failures, state.logouts = 4, 3, 2, 1
    stats = state.stats()
    assert (stats["authorize_requests"], stats["logins"]) == (4, 3)
    assert (stats["login_failures"], stats["logouts"]) == (2, 1)
    state.reset_counters()
    assert (state.authorize_requests, state.logins, state.login_failures, state.logouts) == (
        0,
        0,
        0,
        0,
    )


def test_cli_users_public_clients_and_implicit_lifetime() -> None:
    args = build_parser().parse_args(
        [
            "--user",
            "anna:pw:with:colons",
            "--public-client",
            "implicitclient",
            "--implicit-token-lifetime",
            "60",
        ]
    )
    state = build_app(args).state.devserver
    assert state.users["anna"].password == "pw:with:colons"
    assert state.clients["implicitclient"].public is True
    assert set(state.clients) == {"corp-app", "other-app", "implicitclient"}
    assert state.implicit_token_lifetime == 60.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--user", "no-password"])


def test_cli_prints_the_settings_that_point_an_app_at_it() -> None:
    args = build_parser().parse_args(["--port", "9100", "--path-prefix", "/auth"])
    text = banner(args, session_secret="printed-session-secret-0123456789")
    lines = text.splitlines()
    assert "CORPAUTH_ISSUER=http://127.0.0.1:9100/auth/realms/bog" in lines
    assert "CORPAUTH_API_BASE_URL=http://127.0.0.1:9100/auth/api" in lines
    assert "CORPAUTH_CLIENT_ID=corp-app" in lines
    assert "CORPAUTH_CLIENT_SECRET=dev-secret" in lines
    assert "CORPAUTH_SESSION_SECRET=printed-session-secret-0123456789" in lines
    assert "Sign in as demo / demo." in lines
    # The printed lines are valid settings as they stand.
    values = dict(line.split("=", 1) for line in lines if line.startswith("CORPAUTH_"))
    settings = CorpAuthSettings(
        _env_file=None, **{k.removeprefix("CORPAUTH_").lower(): v for k, v in values.items()}
    )
    assert settings.endpoints().token_url == (
        "http://127.0.0.1:9100/auth/realms/bog/protocol/openid-connect/token"
    )


def test_cli_public_url_wildcard_host_and_public_client() -> None:
    args = build_parser().parse_args(
        ["--host", "0.0.0.0", "--port", "9001", "--public-client", "spa", "--client", "c:s"]
    )
    assert public_url(args) == "http://127.0.0.1:9001"
    assert "CORPAUTH_CLIENT_ID=c" in settings_lines(args, session_secret="k" * 32)
    args = build_parser().parse_args(["--public-url", "https://idp.example.test/"])
    assert public_url(args) == "https://idp.example.test"


def test_cli_help_works_without_uvicorn_and_serving_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--flavour" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["--port", "9100"])
    message = str(exited.value.code)
    assert len(message.splitlines()) == 1
    assert "pip install 'fastapi-corpauth[devserver]'" in message
