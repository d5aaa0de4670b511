"""The browser sign-in protocol as pure functions: URLs, PKCE, state, callbacks, redirects."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from fastapi_corpauth import (
    AuthorizationDenied,
    CallbackInvalid,
    IssuerMismatch,
    ResponseModeMismatch,
)
from fastapi_corpauth._login_protocol import (
    CALLBACK_FIELDS,
    AuthorizationResult,
    ResponseMode,
    authorize_url,
    check_issuer,
    check_response_mode,
    end_session_url,
    expected_response_mode,
    fingerprint,
    new_nonce,
    new_state,
    parse_callback,
    pkce_challenge,
    pkce_pair,
    raise_for_error,
    safe_redirect_target,
)

ISSUER = "https://account.bog.ge/auth/realms/bog"
AUTHORIZE = ISSUER + "/protocol/openid-connect/auth"
LOGOUT = ISSUER + "/protocol/openid-connect/logout"
UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]+$")


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


class TestAuthorizeUrl:
    def build(self, **overrides: object) -> str:
        values: dict[str, object] = {
            "endpoint": AUTHORIZE,
            "client_id": "corp-app",
            "response_type": "token",
            "scope": "corp",
            "redirect_uri": "https://app.example/auth/callback",
            "state": "st4te",
        }
        values.update(overrides)
        return authorize_url(**values)  # type: ignore[arg-type]

    def test_implicit_request_has_exactly_the_documented_parameters(self) -> None:
        url = self.build()
        assert url.startswith(AUTHORIZE + "?")
        assert query(url) == [
            ("client_id", "corp-app"),
            ("response_type", "token"),
            ("scope", "corp"),
            ("redirect_uri", "https://app.example/auth/callback"),
            ("state", "st4te"),
        ]

    def test_a_silent_renewal_asks_for_no_prompt(self) -> None:
        assert query(self.build(prompt="none"))[-1] == ("prompt", "none")
        assert "prompt" not in self.build()

    def test_redirect_uri_with_port_and_query_is_fully_encoded(self) -> None:
        url = self.build(redirect_uri="http://localhost:8000/auth/callback?tenant=a&x=1 2")
        assert (
            "redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Fauth%2Fcallback%3Ftenant%3Da%26x%3D1+2"
            in url
        )
        assert dict(query(url))["redirect_uri"] == (
            "http://localhost:8000/auth/callback?tenant=a&x=1 2"
        )

    def test_scope_with_spaces_and_state_are_encoded(self) -> None:
        url = self.build(scope="corp openid", state="a+b/c=")
        assert "scope=corp+openid" in url
        assert "state=a%2Bb%2Fc%3D" in url

    @pytest.mark.parametrize(("locale", "expected"), [("ka", "ka"), ("en", None), (None, None)])
    def test_kc_locale_only_for_georgian(self, locale: str | None, expected: str | None) -> None:
        params = dict(query(self.build(locale=locale)))
        assert params.get("kc_locale") == expected
        assert "ui_locales" not in params

    @pytest.mark.parametrize("mode", ["fragment", "form_post", "query"])
    def test_response_mode_is_sent_when_chosen(self, mode: str) -> None:
        assert dict(query(self.build(response_mode=mode)))["response_mode"] == mode

    def test_response_mode_is_omitted_by_default(self) -> None:
        assert "response_mode" not in dict(query(self.build()))

    def test_code_flow_carries_pkce_s256(self) -> None:
        verifier, challenge = pkce_pair()
        params = query(self.build(response_type="code", code_challenge=challenge))
        assert ("response_type", "code") in params
        assert params[-2:] == [("code_challenge", challenge), ("code_challenge_method", "S256")]
        assert not any(name == "code_verifier" or verifier in v for name, v in params)

    def test_no_pkce_parameters_without_a_challenge(self) -> None:
        params = dict(query(self.build(response_type="code")))
        assert "code_challenge" not in params
        assert "code_challenge_method" not in params

    def test_endpoint_with_its_own_query_is_extended(self) -> None:
        url = self.build(endpoint=AUTHORIZE + "?kc_idp_hint=bog")
        assert url.startswith(AUTHORIZE + "?kc_idp_hint=bog&client_id=corp-app&")
        assert url.count("?") == 1

    def test_the_nonce_is_sent_when_given(self) -> None:
        assert ("nonce", "n0nce") in query(self.build(response_type="code", nonce="n0nce"))
        assert "nonce" not in dict(query(self.build()))


class TestPkce:
    def test_rfc7636_appendix_b_vector(self) -> None:
        verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

    def test_pair_is_a_valid_verifier_and_its_s256_challenge(self) -> None:
        verifier, challenge = pkce_pair()
        assert 43 <= len(verifier) <= 128
        assert UNRESERVED.match(verifier)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert len(challenge) == 43 and "=" not in challenge

    def test_pairs_are_fresh(self) -> None:
        verifiers = {pkce_pair()[0] for _ in range(200)}
        assert len(verifiers) == 200


class TestState:
    def test_at_least_128_bits_url_safe(self) -> None:
        state = new_state()
        assert UNRESERVED.match(state)
        raw = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        assert len(raw) >= 16
        assert len(state) >= 22

    def test_states_do_not_repeat(self) -> None:
        states = [new_state() for _ in range(1000)]
        assert len(set(states)) == len(states)
        assert len({s[:8] for s in states}) > 990

    def test_fingerprint_is_one_way_and_stable(self) -> None:
        state = new_state()
        assert fingerprint(state) == fingerprint(state)
        assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(state))
        assert state not in fingerprint(state)
        assert fingerprint(state) != fingerprint(state + "x")


FULL_CALLBACK = {
    "state": "st",
    "session_state": "ss",
    "iss": ISSUER,
    "access_token": "at",
    "token_type": "Bearer",
    "expires_in": "900",
    "code": "cd",
    "error": "access_denied",
    "error_description": "User cancelled",
}


class TestParseCallback:
    def test_reads_every_field(self) -> None:
        result = parse_callback(FULL_CALLBACK)
        assert result == AuthorizationResult(
            state="st",
            session_state="ss",
            iss=ISSUER,
            access_token="at",
            token_type="Bearer",
            expires_in="900",
            code="cd",
            error="access_denied",
            error_description="User cancelled",
        )

    def test_unknown_fields_are_ignored_even_when_malformed(self) -> None:
        result = parse_callback(
            {
                "state": "st",
                "access_token": "at",
                "kc_action": "x",
                "not-before-policy": "0",
                "junk": "\x00" * 20_000,
            }
        )
        assert result == AuthorizationResult(state="st", access_token="at")

    def test_empty_values_count_as_absent(self) -> None:
        result = parse_callback({"state": "", "access_token": "at", "iss": "", "expires_in": ""})
        assert result.state is None
        assert result.iss is None
        assert result.expires_in is None

    @pytest.mark.parametrize(("kind", "fields"), [("token", "access_token"), ("code", "code")])
    def test_a_token_or_a_code_alone_is_usable(self, kind: str, fields: str) -> None:
        result = parse_callback({fields: "value"})
        assert getattr(result, fields) == "value"
        assert result.state is None

    def test_an_error_alone_is_usable(self) -> None:
        assert parse_callback({"error": "access_denied"}).error == "access_denied"

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"state": "st"},
            {"state": "st", "iss": ISSUER, "session_state": "ss", "token_type": "Bearer"},
            {"state": "st", "access_token": "", "code": "", "error": ""},
            {"unknown": "at"},
        ],
    )
    def test_nothing_usable_is_invalid(self, params: dict[str, str]) -> None:
        with pytest.raises(CallbackInvalid):
            parse_callback(params)

    @pytest.mark.parametrize("field", CALLBACK_FIELDS)
    @pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "a\rb", "a\tb", "\x1b[31m", "a\x7fb"])
    def test_control_characters_are_invalid(self, field: str, bad: str) -> None:
        params = {"state": "st", "access_token": "at", field: bad}
        with pytest.raises(CallbackInvalid) as caught:
            parse_callback(params)
        assert field in str(caught.value)
        assert bad not in str(caught.value)

    @pytest.mark.parametrize("field", CALLBACK_FIELDS)
    def test_oversized_values_are_invalid(self, field: str) -> None:
        params = {"state": "st", "access_token": "at", field: "x" * 16_385}
        with pytest.raises(CallbackInvalid):
            parse_callback(params)

    def test_large_jwt_sized_values_are_accepted(self) -> None:
        assert parse_callback({"access_token": "x" * 16_384}).access_token == "x" * 16_384

    def test_non_ascii_printable_values_are_kept(self) -> None:
        result = parse_callback({"error": "access_denied", "error_description": "უარყოფილია"})
        assert result.error_description == "უარყოფილია"

    def test_repr_hides_the_token_and_the_state(self) -> None:
        result = parse_callback(FULL_CALLBACK | {"access_token": "SECRET-AT", "state": "STATE"})
        assert "SECRET-AT" not in repr(result)
        assert "STATE" not in repr(result)
        assert "cd" not in repr(result).replace("code", "")

    @pytest.mark.parametrize(
        ("result", "expected"),
        [
            (
                AuthorizationResult(state="s", error="e", access_token="t"),
                "'error', has_state=True",
            ),
            (AuthorizationResult(state="s", access_token="t", code="c"), "'token', has_state=True"),
            (AuthorizationResult(state=None, code="c"), "'code', has_state=False"),
        ],
    )
    def test_repr_says_only_the_kind_and_whether_there_is_a_state(
        self, result: AuthorizationResult, expected: str
    ) -> None:
        assert repr(result) == f"AuthorizationResult(kind={expected})"


class TestCheckIssuer:
    @pytest.mark.parametrize("iss", [ISSUER, ISSUER + "/"])
    @pytest.mark.parametrize("configured", [ISSUER, ISSUER + "/"])
    def test_equal_issuer_passes(self, iss: str, configured: str) -> None:
        check_issuer(AuthorizationResult(state="s", iss=iss), configured)

    def test_absent_issuer_passes(self) -> None:
        check_issuer(AuthorizationResult(state="s"), ISSUER)

    @pytest.mark.parametrize(
        "iss",
        [
            "https://account.bog.ge/auth/realms/other",
            "https://account.bog.ge/auth/realms/bog2",
            "https://account.bog.ge/auth/realms/BOG",
            "https://account.bog.ge/auth/realms",
            "http://account.bog.ge/auth/realms/bog",
            "https://account.bog.ge.evil.example/auth/realms/bog",
            "https://evil.example/auth/realms/bog",
            ISSUER + "/x",
        ],
    )
    def test_other_issuer_is_refused(self, iss: str) -> None:
        with pytest.raises(IssuerMismatch) as caught:
            check_issuer(AuthorizationResult(state="s", iss=iss), ISSUER)
        assert iss not in str(caught.value)


class TestRaiseForError:
    def test_no_error_does_nothing(self) -> None:
        raise_for_error(AuthorizationResult(state="s", access_token="at"))

    def test_an_error_without_a_description(self) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(AuthorizationResult(state="s", error="access_denied"))
        assert caught.value.error == "access_denied"
        assert caught.value.error_description is None

    def test_access_denied(self) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(
                AuthorizationResult(
                    state="s", error="access_denied", error_description="User cancelled"
                )
            )
        assert caught.value.error == "access_denied"
        assert caught.value.error_description == "User cancelled"
        assert caught.value.code == "authorization_denied"

    def test_control_characters_become_spaces(self) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(
                AuthorizationResult(state="s", error="server_error", error_description="a\nb\tc")
            )
        assert caught.value.error_description == "a b c"

    def test_values_are_truncated(self) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(
                AuthorizationResult(state="s", error="e" * 500, error_description="d" * 5000)
            )
        assert caught.value.error == "e" * 64
        assert caught.value.error_description == "d" * 300

    @pytest.mark.parametrize(
        "value", ['say "hi"', "back\\slash", "ქართული", "<script>\u202e", "\u0000"]
    )
    def test_unprintable_values_are_dropped(self, value: str) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(AuthorizationResult(state="s", error=value, error_description=value))
        if value == "\u0000":  # a lone control character becomes a printable space
            assert caught.value.error == " "
        else:
            assert caught.value.error is None
            assert caught.value.error_description is None

    def test_message_does_not_echo_the_server(self) -> None:
        with pytest.raises(AuthorizationDenied) as caught:
            raise_for_error(
                AuthorizationResult(state="s", error="access_denied", error_description="HTML<b>")
            )
        assert "HTML" not in str(caught.value)


class TestEndSessionUrl:
    def test_client_id_and_post_logout_redirect_uri(self) -> None:
        url = end_session_url(
            endpoint=LOGOUT,
            client_id="corp-app",
            post_logout_redirect_uri="https://app.example:8443/bye?x=1",
            locale="en",
        )
        assert url == (
            LOGOUT + "?client_id=corp-app"
            "&post_logout_redirect_uri=https%3A%2F%2Fapp.example%3A8443%2Fbye%3Fx%3D1"
        )

    def test_without_redirect_and_with_georgian(self) -> None:
        url = end_session_url(
            endpoint=LOGOUT, client_id="corp-app", post_logout_redirect_uri=None, locale="ka"
        )
        assert query(url) == [("client_id", "corp-app"), ("ui_locales", "ka")]
        assert "id_token_hint" not in url
        assert "redirect_uri=" not in url

    def test_the_id_token_hint_comes_first(self) -> None:
        url = end_session_url(
            endpoint=LOGOUT,
            client_id="corp-app",
            post_logout_redirect_uri=None,
            locale=None,
            id_token_hint="eyJ.id.token",
        )
        assert query(url) == [("id_token_hint", "eyJ.id.token"), ("client_id", "corp-app")]

    def test_endpoint_with_query(self) -> None:
        url = end_session_url(
            endpoint=LOGOUT + "?a=b", client_id="c", post_logout_redirect_uri=None, locale=None
        )
        assert url == LOGOUT + "?a=b&client_id=c"


OPEN_REDIRECTS = [
    # protocol-relative and slash/backslash mixtures
    "//evil.example",
    "//evil.example/path",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "//\\evil.example",
    "/.\\evil.example",
    # whitespace and control characters that browsers strip inside "//"
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x0b/evil.example",
    "/\x00/evil.example",
    "/\x7f/evil.example",
    "/ /evil.example",
    " /dashboard",
    "/dashboard ",
    "/\u00a0/evil.example",
    "/\u2028/evil.example",
    "/\u3000/evil.example",
    # percent-encoded variants, single, double and triple
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%2F%5Cevil.example",
    "%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%255Cevil.example",
    "/%25252F%25252Fevil.example",
    "/%%32%46%%32%46evil.example",
    "/%09/evil.example",
    "/%0d%0aSet-Cookie:%20a=b",
    "/%00",
    # absolute URLs and dangerous schemes
    "https://evil.example",
    "http://evil.example/",
    "HTTPS://evil.example",
    "https:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    # user-info and look-alike hosts
    "//user@evil.example",
    "//app.example@evil.example",
    "https://app.example@evil.example/",
    "//\u0430pp.example",  # Cyrillic a
    "https://\u0430pp.example/",
    "//evil\u3002example",  # ideographic full stop
    "//xn--pp-8cd.example",
    # not a rooted path
    "evil.example",
    "dashboard",
    "./dashboard",
    "../dashboard",
    "?next=/x",
    "#frag",
    "",
    "/" + "a" * 2048,
]

ACCEPTED_TARGETS = [
    "/",
    "/dashboard",
    "/accounts/42",
    "/a/b/c/",
    "/search?q=tbilisi&page=2",
    "/page#section",
    "/page?x=1#frag",
    "/path?next=/other",
    "/path?next=//not-a-host-here",
    "/@evil.example",
    "/a:b",
    "/path/with%20space",
    "/ქართული/გვერდი",
    "/" + "a" * 2047,
]


class TestSafeRedirectTarget:
    def test_enough_payloads(self) -> None:
        assert len(OPEN_REDIRECTS) >= 40
        assert len(set(OPEN_REDIRECTS)) == len(OPEN_REDIRECTS)

    @pytest.mark.parametrize("target", OPEN_REDIRECTS)
    def test_open_redirect_payloads_fall_back_to_default(self, target: str) -> None:
        assert safe_redirect_target(target, default="/home") == "/home"

    @pytest.mark.parametrize("target", ACCEPTED_TARGETS)
    def test_same_site_paths_are_kept(self, target: str) -> None:
        assert safe_redirect_target(target, default="/home") == target

    def test_missing_target_gives_default(self) -> None:
        assert safe_redirect_target(None, default="/home") == "/home"

    @pytest.mark.parametrize("target", ACCEPTED_TARGETS)
    def test_accepted_targets_resolve_to_this_origin(self, target: str) -> None:
        parts = urlsplit("https://app.example" + target)
        assert parts.netloc == "app.example"
        assert not urlsplit(target).netloc


class TestLengths:
    """The exact sizes: 256 random bits for state and nonce, 384 for the PKCE verifier."""

    def test_state_and_nonce_are_32_random_bytes(self) -> None:
        for value in (new_state(), new_nonce()):
            assert len(value) == 43
            assert len(base64.urlsafe_b64decode(value + "=")) == 32

    def test_nonces_do_not_repeat(self) -> None:
        nonces = {new_nonce() for _ in range(200)}
        assert len(nonces) == 200

    def test_pkce_verifier_is_48_random_bytes(self) -> None:
        verifier, _ = pkce_pair()
        assert len(verifier) == 64  # within RFC 7636's 43..128
        assert len(base64.urlsafe_b64decode(verifier)) == 48


class TestIssuerEdges:
    @pytest.mark.parametrize(
        ("iss", "configured"),
        [
            (ISSUER + "X", ISSUER),  # a realm named like ours plus one character
            (ISSUER + "X/", ISSUER),
            (ISSUER, ISSUER + "X"),
            (ISSUER + "//x", ISSUER),
            ("/" + ISSUER, ISSUER),
        ],
    )
    def test_an_issuer_that_differs_by_one_character_is_refused(
        self, iss: str, configured: str
    ) -> None:
        with pytest.raises(IssuerMismatch) as caught:
            check_issuer(AuthorizationResult(state="s", iss=iss), configured)
        assert caught.value.missing is False

    def test_several_trailing_slashes_are_still_the_same_issuer(self) -> None:
        check_issuer(AuthorizationResult(state="s", iss=ISSUER + "//"), ISSUER)
        check_issuer(AuthorizationResult(state="s", iss=ISSUER), ISSUER + "//")

    def test_a_missing_issuer_is_refused_when_the_server_promised_one(self) -> None:
        # RFC 9207: authorization_response_iss_parameter_supported makes "iss" mandatory.
        with pytest.raises(IssuerMismatch) as caught:
            check_issuer(AuthorizationResult(state="s"), ISSUER, required=True)
        assert caught.value.missing is True
        check_issuer(AuthorizationResult(state="s", iss=ISSUER), ISSUER, required=True)
        check_issuer(AuthorizationResult(state="s"), ISSUER, required=False)


class TestResponseMode:
    @pytest.mark.parametrize(
        ("response_type", "requested", "expected"),
        [
            ("token", None, "fragment"),
            ("code", None, "query"),
            ("token", "form_post", "form_post"),
            ("code", "form_post", "form_post"),
            ("token", "query", "query"),
            ("code", "fragment", "fragment"),
        ],
    )
    def test_expected_mode_is_the_requested_one_else_the_flows_default(
        self, response_type: str, requested: ResponseMode | None, expected: str
    ) -> None:
        assert expected_response_mode(response_type, requested) == expected  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "result",
        [
            AuthorizationResult(state="s", access_token="at"),
            AuthorizationResult(state="s", code="c"),
            AuthorizationResult(state="s", access_token="at", code="c"),
        ],
    )
    def test_a_token_or_code_in_another_mode_is_refused(self, result: AuthorizationResult) -> None:
        with pytest.raises(ResponseModeMismatch):
            check_response_mode(result, arrived_in="query", expected="fragment")
        check_response_mode(result, arrived_in="fragment", expected="fragment")

    def test_an_error_is_accepted_in_any_mode(self) -> None:
        error = AuthorizationResult(state="s", error="access_denied")
        modes: tuple[ResponseMode, ...] = ("query", "fragment", "form_post")
        for arrived_in in modes:
            check_response_mode(error, arrived_in=arrived_in, expected="fragment")


DOT_SEGMENT_REDIRECTS = [
    "/.//evil.example",
    "/..//evil.example",
    "/./",
    "/a/../b",
    "/a/./b",
    "/a/..",
    "/a/.",
    "/%2e%2e//evil.example",
    "/%2E/%2Fevil.example",
    "/a/.%3Fx",  # decoded, the path ends in a dot segment
    "/a/..?next=/x",
    "/a/..#frag",
    "/a/..?b?c",  # the path ends at the first "?"
    "/a/..#b#c",  # ... and at the first "#"
    "/a/..#b?c",
]

LOOK_ALIKE_REDIRECTS = [
    "/\uff0fevil.example",  # fullwidth solidus
    "/\uff3cevil.example",  # fullwidth reverse solidus
    "/\ufe68evil.example",  # small reverse solidus
    "/%EF%BC%8Fevil.example",  # the fullwidth solidus, percent-encoded
    "/path/\uff3c",
]


class TestRedirectTargetEdges:
    @pytest.mark.parametrize("target", DOT_SEGMENT_REDIRECTS + LOOK_ALIKE_REDIRECTS)
    def test_dot_segments_and_look_alikes_fall_back_to_default(self, target: str) -> None:
        assert safe_redirect_target(target, default="/home") == "/home"

    @pytest.mark.parametrize(
        "target",
        [
            "/ok?x=/../",
            "/ok?x=/./y",
            "/ok#/../",
            "/ok?a=1#/./b",
            "/.well-known/x",
            "/a..b/..c/...",
            "/a?b?/../",
        ],
    )
    def test_dots_outside_the_path_or_inside_names_are_kept(self, target: str) -> None:
        assert safe_redirect_target(target, default="/home") == target

    def test_decoding_stops_after_three_rounds(self) -> None:
        # What is still encoded after three rounds is a plain path segment: the browser
        # decodes once, and "/%252F" reaches this app as "/%2F" again.
        target = "/%2525252Fevil.example"
        assert safe_redirect_target(target, default="/home") == target
        assert safe_redirect_target("/%25252Fevil.example", default="/home") == "/home"
