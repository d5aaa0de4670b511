"""The pure protocol core: request building, response parsing, expiry arithmetic."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import pytest
from pydantic import SecretStr

from fastapi_corpauth import (
    CachePolicy,
    ClientCredentials,
    CredentialsRejected,
    EndpointNotFound,
    MalformedTokenResponse,
    RetryPolicy,
    TokenEndpointUnavailable,
)
from fastapi_corpauth._protocol import (
    authorization_code_request,
    backoff_delay,
    basic_authorization,
    client_credentials_request,
    jwt_claims_unverified,
    parse_retry_after,
    parse_token_response,
    refresh_at,
    refresh_token_request,
    stale_at,
    token_from_fields,
)
from tests.support import token_body

NOW = 1_700_000_000.0


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT', 'kid': 'k'})}.{part(claims)}.c2ln"


def parse(status: int = 200, body: bytes = b"", **headers: str) -> Any:
    return parse_token_response(status_code=status, headers=headers, body=body, now=NOW)


class TestBasicAuthorization:
    @pytest.mark.parametrize(
        "secret",
        ["plain", "with+plus", "100%", "a:b:c", "გამარჯობა", "sp ace", "=&?/#"],
    )
    def test_round_trips_through_rfc6749_decoding(self, secret: str) -> None:
        header = basic_authorization("corp-app", secret)
        assert header.startswith("Basic ")
        user, _, password = base64.b64decode(header[6:]).decode("ascii").partition(":")
        assert unquote_plus(user) == "corp-app"
        assert unquote_plus(password) == secret

    def test_special_characters_are_encoded(self) -> None:
        raw = base64.b64decode(basic_authorization("id", "a+b%c:d")[6:]).decode()
        assert raw == "id:a%2Bb%25c%3Ad"


class TestClientCredentialsRequest:
    def credentials(self, **kw: Any) -> ClientCredentials:
        return ClientCredentials(client_id="corp-app", client_secret=SecretStr("x+y"), **kw)

    def test_basic_request_has_only_grant_type_and_scope(self) -> None:
        request = client_credentials_request(
            token_url="https://kc/token", credentials=self.credentials(), scope="corp"
        )
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert parse_qs(request.content.decode()) == {
            "grant_type": ["client_credentials"],
            "scope": ["corp"],
        }
        assert request.headers["authorization"] == basic_authorization("corp-app", "x+y")

    def test_scope_is_omitted_when_not_configured(self) -> None:
        request = client_credentials_request(
            token_url="https://kc/token", credentials=self.credentials(), scope=None
        )
        assert request.content == b"grant_type=client_credentials"

    def test_client_secret_post(self) -> None:
        request = client_credentials_request(
            token_url="https://kc/token",
            credentials=self.credentials(auth_method="client_secret_post"),
            scope="corp",
        )
        assert "authorization" not in request.headers
        assert parse_qs(request.content.decode())["client_secret"] == ["x+y"]


class TestParseTokenResponse:
    @pytest.mark.parametrize("token_type", ["bearer", "Bearer", "BEARER"])
    def test_token_type_case_insensitive(self, token_type: str) -> None:
        token = parse(body=token_body(token_type=token_type))
        assert token.token_type == "Bearer"
        assert token.authorization == "Bearer tok-1"

    @pytest.mark.parametrize("expires_in", [300, "300", 300.0, " 300 "])
    def test_expires_in_number_or_string(self, expires_in: Any) -> None:
        token = parse(body=token_body(expires_in=expires_in))
        assert token.expires_at == NOW + 300
        assert token.lifetime == 300

    def test_missing_expires_in_falls_back_to_jwt_exp(self) -> None:
        access = jwt({"exp": int(NOW) + 120, "iat": int(NOW)})
        token = parse(body=token_body(access_token=access, expires_in=None))
        assert token.expires_at == NOW + 120

    def test_missing_expires_in_and_opaque_token_uses_default(self) -> None:
        token = parse_token_response(
            status_code=200,
            headers={},
            body=token_body(expires_in=None),
            now=NOW,
            default_lifetime=45,
        )
        assert token.expires_at == NOW + 45

    @pytest.mark.parametrize("bad", ["soon", -5, None, True, [1], "nan", "inf"])
    def test_unusable_expires_in_is_ignored(self, bad: Any) -> None:
        body = json.loads(token_body())
        body["expires_in"] = bad
        token = parse(body=json.dumps(body).encode())
        assert token.expires_at == NOW + 60

    def test_legacy_keycloak_body(self) -> None:
        body = token_body(
            token_type="bearer",
            expires_in=1800,
            refresh_expires_in=1800,
            refresh_token="refresh-secret",
            session_state="0b7c-uuid",
            scope="corp",
            **{"not-before-policy": "1700000000"},
        )
        token = parse(body=body)
        assert token.refresh_token == "refresh-secret"
        assert token.refresh_expires_at == NOW + 1800
        assert token.session_state == "0b7c-uuid"
        assert token.not_before_policy == 1_700_000_000
        assert token.scope == ("corp",)

    def test_modern_keycloak_body(self) -> None:
        token = parse(body=token_body())
        assert token.refresh_token is None
        assert token.refresh_expires_at is None
        assert token.session_state is None
        assert token.scope == ("corp", "profile", "email")

    def test_unknown_fields_kept_but_secrets_dropped(self) -> None:
        token = parse(body=token_body(app_id="x", id_token="idt", issued_token_type="urn:x"))
        assert token.id_token == "idt"
        assert token.extra == {"issued_token_type": "urn:x"}

    @pytest.mark.parametrize(
        "body",
        [
            b"<html><body>Gateway</body></html>",
            b'{"access_token": "abc", "expires_in": 3',
            b"[]",
            b'"token"',
            b"\xff\xfe",
            b"",
            json.dumps({"token_type": "Bearer"}).encode(),
            json.dumps({"access_token": "", "token_type": "Bearer"}).encode(),
            json.dumps({"access_token": 12, "token_type": "Bearer"}).encode(),
            json.dumps({"access_token": "a", "token_type": "mac"}).encode(),
        ],
    )
    def test_malformed_success_bodies(self, body: bytes) -> None:
        with pytest.raises(MalformedTokenResponse) as info:
            parse(body=body)
        assert info.value.code == "token_response_malformed"

    @pytest.mark.parametrize(
        ("status", "error"),
        [
            (401, "unauthorized_client"),
            (401, "invalid_client"),
            (400, "invalid_client"),
            (400, "unauthorized_client"),
            (400, "invalid_scope"),
            (403, "unauthorized_client"),
            (401, None),
        ],
    )
    def test_credentials_rejected(self, status: int, error: str | None) -> None:
        body = json.dumps({"error": error, "error_description": "Invalid client"}).encode()
        with pytest.raises(CredentialsRejected) as info:
            parse(status=status, body=body if error else b"<html/>")
        assert info.value.status_code == status
        assert info.value.error == error

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
    def test_transient_failures(self, status: int) -> None:
        with pytest.raises(TokenEndpointUnavailable) as info:
            parse(status=status, body=b"oops")
        assert info.value.status_code == status
        assert info.value.retry_after is None

    def test_retry_after_is_read(self) -> None:
        with pytest.raises(TokenEndpointUnavailable) as info:
            parse(status=429, body=b"", **{"retry-after": "7"})
        assert info.value.retry_after == 7


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after("12", now=NOW) == 12

    def test_http_date(self) -> None:
        assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now=NOW) == pytest.approx(20)

    @pytest.mark.parametrize("value", [None, "", "soon", "-3"])
    def test_unusable(self, value: str | None) -> None:
        assert parse_retry_after(value, now=NOW) is None


class TestJwtClaims:
    def test_reads_claims(self) -> None:
        assert jwt_claims_unverified(jwt({"exp": 5})) == {"exp": 5}

    @pytest.mark.parametrize("value", ["opaque", "a.b", "a.!!!.c", "a.bnVsbA.c"])
    def test_not_a_jwt(self, value: str) -> None:
        assert jwt_claims_unverified(value) is None


class TestExpiryArithmetic:
    def token(self, lifetime: float) -> Any:
        return parse(body=token_body(expires_in=lifetime))

    def test_long_token_uses_full_leeway(self) -> None:
        token = self.token(1800)
        policy = CachePolicy(leeway=30, refresh_window=60)
        assert stale_at(token, policy) == NOW + 1770
        assert refresh_at(token, policy) == NOW + 1710

    def test_short_token_leeway_adapts(self) -> None:
        token = self.token(30)
        policy = CachePolicy(leeway=30, refresh_window=60)
        assert stale_at(token, policy) == NOW + 22.5
        assert refresh_at(token, policy) == NOW + 15
        assert refresh_at(token, policy) > NOW

    def test_backoff_is_bounded_and_grows(self) -> None:
        policy = RetryPolicy(backoff_base=0.5, backoff_max=3)

        def upper(a: float, b: float) -> float:
            return b

        assert [backoff_delay(n, policy, uniform=upper) for n in (1, 2, 3, 4, 5)] == [
            0.5,
            1.0,
            2.0,
            3,
            3,
        ]


def error_body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


class TestRequestsInDetail:
    def credentials(self, method: str = "client_secret_basic") -> ClientCredentials:
        return ClientCredentials(
            client_id="corp/app",
            client_secret=SecretStr("s/cret"),
            auth_method=method,  # type: ignore[arg-type]
        )

    def test_a_slash_in_the_id_or_secret_is_encoded_too(self) -> None:
        # RFC 6749 Appendix B form-encodes everything outside the unreserved set.
        raw = base64.b64decode(basic_authorization("corp/app", "s/cret")[6:]).decode()
        assert raw == "corp%2Fapp:s%2Fcret"

    def test_token_requests_ask_for_json(self) -> None:
        request = client_credentials_request(
            token_url="https://kc/token", credentials=self.credentials(), scope=None
        )
        assert request.headers["accept"] == "application/json"
        assert request.url == "https://kc/token"

    def test_client_secret_post_sends_the_client_id_in_the_body(self) -> None:
        request = client_credentials_request(
            token_url="https://kc/token",
            credentials=self.credentials("client_secret_post"),
            scope=None,
        )
        assert parse_qs(request.content.decode()) == {
            "grant_type": ["client_credentials"],
            "client_id": ["corp/app"],
            "client_secret": ["s/cret"],
        }

    def test_the_code_exchange(self) -> None:
        request = authorization_code_request(
            token_url="https://kc/token",
            credentials=self.credentials(),
            code="the-code",
            redirect_uri="https://app.example/auth/callback",
            code_verifier="v" * 64,
        )
        assert request.method == "POST"
        assert request.url == "https://kc/token"
        assert parse_qs(request.content.decode()) == {
            "grant_type": ["authorization_code"],
            "code": ["the-code"],
            "redirect_uri": ["https://app.example/auth/callback"],
            "code_verifier": ["v" * 64],
        }
        assert request.headers["authorization"] == basic_authorization("corp/app", "s/cret")

    @pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
    def test_the_refresh_request(self, method: str) -> None:
        request = refresh_token_request(
            token_url="https://kc/token",
            credentials=self.credentials(method),
            refresh_token="the-refresh-token",
        )
        assert request.method == "POST"
        assert request.url == "https://kc/token"
        form = parse_qs(request.content.decode())
        assert form["grant_type"] == ["refresh_token"]
        assert form["refresh_token"] == ["the-refresh-token"]
        if method == "client_secret_basic":
            assert request.headers["authorization"] == basic_authorization("corp/app", "s/cret")
            assert "client_secret" not in form
        else:
            assert "authorization" not in request.headers
            assert form["client_id"] == ["corp/app"]
            assert form["client_secret"] == ["s/cret"]

    @pytest.mark.parametrize("verifier", [None, ""])
    def test_the_code_exchange_without_pkce(self, verifier: str | None) -> None:
        request = authorization_code_request(
            token_url="https://kc/token",
            credentials=self.credentials("client_secret_post"),
            code="c",
            redirect_uri="https://app.example/cb",
            code_verifier=verifier,
        )
        assert "code_verifier" not in parse_qs(request.content.decode())
        assert parse_qs(request.content.decode())["client_secret"] == ["s/cret"]


class TestErrorResponsesInDetail:
    def test_the_servers_reason_is_kept(self) -> None:
        body = error_body(error="invalid_client", error_description="Invalid client secret")
        with pytest.raises(CredentialsRejected) as info:
            parse(status=401, body=body)
        assert info.value.error == "invalid_client"
        assert info.value.error_description == "Invalid client secret"
        assert "invalid_client" in str(info.value)
        assert "client credentials" in str(info.value)

    def test_a_refusal_that_is_not_about_the_credentials(self) -> None:
        # 403 access_denied: the credentials are fine, this request is not allowed.
        body = error_body(error="access_denied", error_description="Client not allowed")
        with pytest.raises(CredentialsRejected) as info:
            parse(status=403, body=body)
        assert (info.value.status_code, info.value.error) == (403, "access_denied")
        assert info.value.error_description == "Client not allowed"
        assert "refused the request (HTTP 403)" in str(info.value)
        assert "client credentials" not in str(info.value)

    @pytest.mark.parametrize("status", [400, 401])
    def test_400_and_401_are_about_the_credentials_whatever_the_code(self, status: int) -> None:
        with pytest.raises(CredentialsRejected) as info:
            parse(status=status, body=error_body(error="invalid_request"))
        assert "client credentials" in str(info.value)
        with pytest.raises(CredentialsRejected) as info:
            parse(status=status, body=b"")
        assert f"(HTTP {status}, no OAuth error code)" in str(info.value)

    @pytest.mark.parametrize("status", [402, 403, 409, 410, 422])
    def test_other_4xx_with_a_credentials_error(self, status: int) -> None:
        with pytest.raises(CredentialsRejected) as info:
            parse(status=status, body=error_body(error="unauthorized_client"))
        assert "client credentials" in str(info.value)
        assert info.value.status_code == status

    @pytest.mark.parametrize(
        "body",
        [b"[1, 2]", b'"invalid_client"', b"null", b"\xff\xfe", b"[" * 5000],
    )
    def test_a_4xx_body_that_is_not_an_object_has_no_oauth_fields(self, body: bytes) -> None:
        with pytest.raises(CredentialsRejected) as info:
            parse(status=403, body=body)
        assert (info.value.error, info.value.error_description) == (None, None)
        assert info.value.status_code == 403

    def test_oauth_fields_that_are_not_strings_are_dropped(self) -> None:
        with pytest.raises(CredentialsRejected) as info:
            parse(status=400, body=error_body(error=5, error_description=["x"]))
        assert (info.value.error, info.value.error_description) == (None, None)

    @pytest.mark.parametrize("status", [404, 405])
    def test_a_wrong_url(self, status: int) -> None:
        with pytest.raises(EndpointNotFound) as info:
            parse(status=status, body=error_body(error="invalid_client"))
        assert info.value.status_code == status

    def test_406_is_a_refusal_not_a_wrong_url(self) -> None:
        with pytest.raises(CredentialsRejected):
            parse(status=406, body=b"")

    def test_retry_after_as_an_http_date(self) -> None:
        with pytest.raises(TokenEndpointUnavailable) as info:
            parse(status=503, body=b"", **{"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"})
        assert info.value.retry_after == pytest.approx(20)

    @pytest.mark.parametrize("status", [100, 199, 300, 302, 304, 399])
    def test_only_a_2xx_carries_a_token(self, status: int) -> None:
        with pytest.raises(MalformedTokenResponse) as info:
            parse(status=status, body=token_body())
        assert info.value.status_code == status

    @pytest.mark.parametrize("status", [200, 201, 299])
    def test_any_2xx_carries_a_token(self, status: int) -> None:
        assert parse(status=status, body=token_body()).access_token == "tok-1"

    @pytest.mark.parametrize(
        "body",
        [
            b"<html/>",
            b"[1]",
            json.dumps({"token_type": "Bearer"}).encode(),
            json.dumps({"access_token": "a", "token_type": "mac"}).encode(),
            json.dumps({"access_token": "a", "token_type": 5}).encode(),
        ],
    )
    def test_a_malformed_2xx_names_its_status(self, body: bytes) -> None:
        with pytest.raises(MalformedTokenResponse) as info:
            parse(status=201, body=body)
        assert info.value.status_code == 201


class TestTokenFieldsInDetail:
    def body(self, **fields: Any) -> bytes:
        return json.dumps({"access_token": "tok-1", **fields}).encode()

    def test_a_response_without_token_type_is_bearer(self) -> None:
        token = parse(body=self.body(expires_in=300))
        assert token.token_type == "Bearer"
        assert token.expires_at == NOW + 300

    def test_expires_in_zero_means_already_expired(self) -> None:
        token = parse(body=token_body(expires_in=0))
        assert token.expires_at == NOW
        policy = CachePolicy(leeway=30, refresh_window=60)
        assert stale_at(token, policy) == NOW
        assert refresh_at(token, policy) == NOW

    def test_without_expiry_the_default_lifetime_applies(self) -> None:
        assert parse(body=self.body()).expires_at == NOW + 60
        custom = parse_token_response(
            status_code=200, headers={}, body=self.body(), now=NOW, default_lifetime=5
        )
        assert custom.expires_at == NOW + 5

    def test_a_jwt_exp_in_the_past_means_already_expired(self) -> None:
        token = parse(body=self.body(access_token=jwt({"exp": NOW - 100})))
        assert token.expires_at == NOW

    def test_a_jwt_whose_payload_is_an_array_has_no_exp(self) -> None:
        header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(b"[1, 2]").rstrip(b"=").decode()
        token = f"{header}.{payload}.sig"
        assert jwt_claims_unverified(token) is None
        assert parse(body=self.body(access_token=token)).expires_at == NOW + 60

    def test_fields_of_the_wrong_type_are_dropped(self) -> None:
        token = parse(
            body=self.body(
                scope=["corp"],
                refresh_token=5,
                session_state=5,
                id_token=5,
                refresh_expires_in=1800,
            )
        )
        assert token.scope == ()
        assert token.refresh_token is None
        assert token.refresh_expires_at is None
        assert token.session_state is None
        assert token.id_token is None

    def test_empty_refresh_and_id_tokens_are_absent(self) -> None:
        token = parse(body=self.body(refresh_token="", id_token="", refresh_expires_in=1800))
        assert token.refresh_token is None
        assert token.id_token is None

    def test_refresh_expires_in_zero_means_no_refresh_expiry(self) -> None:
        token = parse(body=self.body(refresh_token="r", refresh_expires_in=0))
        assert token.refresh_token == "r"
        assert token.refresh_expires_at is None
        token = parse(body=self.body(refresh_token="r", refresh_expires_in=1800))
        assert token.refresh_expires_at == NOW + 1800

    def test_not_before_policy_defaults_to_zero(self) -> None:
        assert parse(body=self.body()).not_before_policy == 0
        assert parse(body=self.body(**{"not-before-policy": 1_600_000_000})).not_before_policy == (
            1_600_000_000
        )


def test_token_fields_of_a_callback_default_to_a_minute() -> None:
    # The implicit flow's callback carries the token's fields without a JSON body.
    token = token_from_fields({"access_token": "at"}, now=NOW)
    assert (token.expires_at, token.token_type) == (NOW + 60, "Bearer")


class TestRetryAfterInDetail:
    def test_a_date_in_the_past_means_now(self) -> None:
        assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=NOW) == 0.0
