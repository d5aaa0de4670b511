"""The devserver over HTTP, for every Keycloak flavour it imitates."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from fastapi import FastAPI

from fastapi_corpauth.devserver import FLAVOURS, DevClient, DevServerState, create_devserver
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

TOKEN_PATH = "/realms/bog/protocol/openid-connect/token"
DISCOVERY_PATH = "/realms/bog/.well-known/openid-configuration"
SPECIAL_SECRET = "a+b%c:d é ✓"
CLIENTS = (
    DevClient(client_id="corp-app", client_secret="dev-secret"),
    DevClient(client_id="special", client_secret=SPECIAL_SECRET),
    DevClient(client_id="no-sa", client_secret="s", service_accounts_enabled=False),
)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:
        yield client


def devserver(flavour: str = "modern", **kwargs: Any) -> tuple[FastAPI, DevServerState]:
    app = create_devserver(flavour=flavour, clients=CLIENTS, **kwargs)
    return app, app.state.devserver


def basic(client_id: str, secret: str, *, rfc_encode: bool = True) -> dict[str, str]:
    if rfc_encode:
        client_id, secret = quote_plus(client_id, safe=""), quote_plus(secret, safe="")
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def request_token(
    client: httpx.AsyncClient,
    *,
    headers: dict[str, str] | None = None,
    path: str = TOKEN_PATH,
    **form: str,
) -> httpx.Response:
    if headers is None:
        headers = basic("corp-app", "dev-secret")
    return await client.post(
        path, data=form or {"grant_type": "client_credentials"}, headers=headers
    )


def jwt_part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def token_claims(state: DevServerState, token: str) -> dict[str, Any]:
    """The claims of a token the server issued: decoded, or introspected when opaque."""
    if state.flavour.token_format == "opaque":
        return state.introspect(token)
    return jwt_part(token, 1)


def assert_keycloak_error(
    response: httpx.Response, status: int, error: str, description: str | None
) -> None:
    assert response.status_code == status
    assert "www-authenticate" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    expected: dict[str, str] = {"error": error}
    if description is not None:
        expected["error_description"] = description
    assert response.json() == expected


# --- token endpoint: success -------------------------------------------------------------------


async def test_success_body_matches_flavour(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    clock = FakeClock(1_700_000_000.5)
    app, state = devserver(flavour_name, clock=clock, token_lifetime=1800)
    async with serve(app) as client:
        response = await request_token(client)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    expected_keys = ["access_token", "refresh_expires_in", "token_type", "not-before-policy"]
    expected_keys.append("scope")
    if flavour.include_expires_in:
        expected_keys.insert(1, "expires_in")
        assert body["expires_in"] == 1800
    if flavour.refresh_tokens:
        expected_keys.insert(expected_keys.index("token_type"), "refresh_token")
        expected_keys.insert(expected_keys.index("scope"), "session_state")
        assert body["refresh_expires_in"] == 1800
        uuid.UUID(body["session_state"])
    else:
        assert body["refresh_expires_in"] == 0
    assert list(body) == expected_keys
    assert body["token_type"] == flavour.token_type
    assert body["not-before-policy"] == 0
    assert body["scope"] == " ".join(("corp", *flavour.scope_extra))

    claims = token_claims(state, body["access_token"])
    assert claims["iss"] == "http://dev/realms/bog"
    if flavour.token_format == "opaque":
        assert body["access_token"].count(".") == 0
    else:
        header = jwt_part(body["access_token"], 0)
        assert header["alg"] == "RS256"
        assert header["kid"] == state.signing_key.kid
    if flavour.token_format == "rfc9068":
        assert header["typ"] == "at+jwt"
        assert claims["client_id"] == claims["sub"] == "corp-app"
        assert claims["aud"] == "bank-api"
        assert "typ" not in claims
    else:
        assert claims["azp"] == "corp-app"
        assert claims["typ"] == "Bearer"
        assert claims["preferred_username"] == "service-account-corp-app"
        uuid.UUID(claims["sub"])
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now + 1800)
    assert claims["scope"] == body["scope"]
    uuid.UUID(claims["jti"])


async def test_modern_scope_is_corp_profile_email() -> None:
    app, _ = devserver("modern")
    async with serve(app) as client:
        response = await request_token(client)
    assert response.json()["scope"] == "corp profile email"
    assert response.json()["token_type"] == "Bearer"


async def test_client_secret_post(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(
            client,
            headers={},
            grant_type="client_credentials",
            client_id="corp-app",
            client_secret="dev-secret",
        )
    assert response.status_code == 200


async def test_form_fields_override_the_basic_header(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        fixed_by_form = await request_token(
            client,
            headers=basic("corp-app", "wrong"),
            grant_type="client_credentials",
            client_secret="dev-secret",
        )
        broken_by_form = await request_token(
            client,
            headers=basic("corp-app", "dev-secret"),
            grant_type="client_credentials",
            client_secret="wrong",
        )
    assert fixed_by_form.status_code == 200
    assert_keycloak_error(
        broken_by_form,
        flavour.wrong_secret_status,
        flavour.wrong_secret_error,
        flavour.wrong_secret_description,
    )


async def test_code_and_redirect_uri_are_ignored(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(
            client,
            grant_type="client_credentials",
            code="abc",
            redirect_uri="https://app.example/callback",
        )
    assert response.status_code == 200
    claims = token_claims(state, response.json()["access_token"])
    assert claims.get("azp", claims.get("client_id")) == "corp-app"


async def test_requested_scope_subset_is_granted_with_defaults(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, grant_type="client_credentials", scope="corp")
    assert response.status_code == 200
    assert response.json()["scope"] == " ".join(("corp", *flavour.scope_extra))


async def test_special_character_secret(flavour_name: str) -> None:
    """RFC-encoded Basic works where Keycloak decodes; client_secret_post works everywhere."""
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        encoded = await request_token(client, headers=basic("special", SPECIAL_SECRET))
        raw = await request_token(
            client, headers=basic("special", SPECIAL_SECRET, rfc_encode=False)
        )
        posted = await request_token(
            client,
            headers={},
            grant_type="client_credentials",
            client_id="special",
            client_secret=SPECIAL_SECRET,
        )
    assert posted.status_code == 200
    if flavour.basic_url_decode:
        assert encoded.status_code == 200
        unexpected = "Unexpected error when authenticating client"
        assert_keycloak_error(raw, 400, "unauthorized_client", unexpected)
    else:
        assert raw.status_code == 200
        assert_keycloak_error(
            encoded,
            flavour.wrong_secret_status,
            flavour.wrong_secret_error,
            flavour.wrong_secret_description,
        )


# --- token endpoint: errors --------------------------------------------------------------------


async def test_missing_grant_type(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, scope="corp")
    assert_keycloak_error(response, 400, "invalid_request", "Missing form parameter: grant_type")


async def test_json_body_has_no_grant_type(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await client.post(
            TOKEN_PATH, json={"grant_type": "client_credentials"}, headers=basic("corp-app", "x")
        )
    assert_keycloak_error(response, 400, "invalid_request", "Missing form parameter: grant_type")


async def test_unsupported_grant_type(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, grant_type="password")
    assert_keycloak_error(response, 400, "unsupported_grant_type", "Unsupported grant_type")


async def test_missing_client_id(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, headers={}, grant_type="client_credentials")
    assert_keycloak_error(response, 400, "invalid_client", "Missing client_id parameter")


async def test_unknown_client(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, headers=basic("nobody", "dev-secret"))
    assert_keycloak_error(
        response,
        flavour.unknown_client_status,
        flavour.unknown_client_error,
        flavour.unknown_client_description,
    )


async def test_wrong_secret(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, headers=basic("corp-app", "wrong"))
    assert_keycloak_error(
        response,
        flavour.wrong_secret_status,
        flavour.wrong_secret_error,
        flavour.wrong_secret_description,
    )


async def test_exact_wrong_secret_answers() -> None:
    expected = {
        "modern": (401, "unauthorized_client", "Invalid client or Invalid client credentials"),
        "legacy": (401, "unauthorized_client", "Invalid client secret"),
        "invalid-client-400": (
            400,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        ),
    }
    for name, (status, error, description) in expected.items():
        app, _ = devserver(name)
        async with serve(app) as client:
            response = await request_token(client, headers=basic("corp-app", "wrong"))
        assert_keycloak_error(response, status, error, description)


async def test_exact_unknown_client_answers() -> None:
    expected = {
        "modern": (401, "invalid_client", "Invalid client or Invalid client credentials"),
        "legacy": (400, "unauthorized_client", "Invalid client credentials"),
    }
    for name, (status, error, description) in expected.items():
        app, _ = devserver(name)
        async with serve(app) as client:
            response = await request_token(client, headers=basic("ghost", "x"))
        assert_keycloak_error(response, status, error, description)


async def test_missing_secret(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(
            client, headers={}, grant_type="client_credentials", client_id="corp-app"
        )
    assert_keycloak_error(
        response,
        flavour.missing_secret_status,
        flavour.missing_secret_error,
        flavour.missing_secret_description,
    )


async def test_service_accounts_disabled(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, headers=basic("no-sa", "s"))
    assert_keycloak_error(
        response, 400, "unauthorized_client", "Client not enabled to retrieve service account"
    )
    assert state.tokens_issued == 0


async def test_unknown_scope(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, grant_type="client_credentials", scope="corp admin")
    assert_keycloak_error(response, 400, "invalid_scope", "Invalid scopes: corp admin")


async def test_malformed_escape_in_basic_header(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await request_token(client, headers=basic("corp-app", "100%", rfc_encode=False))
    if flavour.basic_url_decode:
        unexpected = "Unexpected error when authenticating client"
        assert_keycloak_error(response, 400, "unauthorized_client", unexpected)
    else:
        assert_keycloak_error(
            response,
            flavour.wrong_secret_status,
            flavour.wrong_secret_error,
            flavour.wrong_secret_description,
        )


async def test_non_basic_authorization_is_challenged_unless_form_names_client() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        challenged = await request_token(client, headers={"Authorization": "Negotiate abc"})
        posted = await request_token(
            client,
            headers={"Authorization": "Negotiate abc"},
            grant_type="client_credentials",
            client_id="corp-app",
            client_secret="dev-secret",
        )
    assert challenged.status_code == 401
    assert challenged.headers["www-authenticate"] == 'Basic realm="bog"'
    assert posted.status_code == 200


async def test_unknown_realm(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        discovery = await client.get("/realms/nope/.well-known/openid-configuration")
        token = await request_token(client, path="/realms/nope/protocol/openid-connect/token")
    for response in (discovery, token):
        assert response.status_code == 404
        assert response.json() == {"error": "Realm does not exist"}


# --- discovery ---------------------------------------------------------------------------------


async def test_discovery_document(flavour_name: str) -> None:
    app, _ = devserver(flavour_name)
    async with serve(app) as client:
        response = await client.get(DISCOVERY_PATH)
    assert response.status_code == 200
    document = response.json()
    oidc = "http://dev/realms/bog/protocol/openid-connect"
    assert document["issuer"] == "http://dev/realms/bog"
    assert document["token_endpoint"] == f"{oidc}/token"
    assert document["authorization_endpoint"] == f"{oidc}/auth"
    assert document["end_session_endpoint"] == f"{oidc}/logout"
    assert document["revocation_endpoint"] == f"{oidc}/revoke"
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "client_credentials" in document["grant_types_supported"]
    assert {"query", "fragment", "form_post"} <= set(document["response_modes_supported"])
    assert "corp" in document["scopes_supported"]
    flavour = FLAVOURS[flavour_name]
    assert document["authorization_response_iss_parameter_supported"] is flavour.issue_iss


async def test_mounted_devserver_reports_the_mounted_issuer() -> None:
    outer = FastAPI()
    dev = create_devserver()
    outer.mount("/auth", dev)
    async with serve(outer) as client:
        document = (await client.get(f"/auth{DISCOVERY_PATH}")).json()
        token = await client.post(
            document["token_endpoint"],
            data={"grant_type": "client_credentials"},
            headers=basic("corp-app", "dev-secret"),
        )
        accounts = await client.get(
            "/auth/api/accounts",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
    assert document["issuer"] == "http://dev/auth/realms/bog"
    assert document["token_endpoint"] == "http://dev/auth/realms/bog/protocol/openid-connect/token"
    assert jwt_part(token.json()["access_token"], 1)["iss"] == "http://dev/auth/realms/bog"
    assert accounts.status_code == 200


# --- sample bank API ---------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(description: str) -> str:
    return f'Bearer realm="bog", error="invalid_token", error_description="{description}"'


async def test_api_accepts_issued_tokens(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        token = (await request_token(client)).json()["access_token"]
        listing = await client.get("/api/accounts", headers=bearer(token))
        single = await client.get("/api/accounts/acc-2", headers=bearer(token))
        missing = await client.get(
            "/api/accounts/nope", headers={"Authorization": f"bearer {token}"}
        )
    assert listing.status_code == 200
    accounts = listing.json()["accounts"]
    assert len(accounts) >= 3
    assert all(a["iban"].startswith("GE") and len(a["iban"]) == 22 for a in accounts)
    assert {a["currency"] for a in accounts} == {"GEL", "USD"}
    assert single.json()["id"] == "acc-2"
    assert missing.status_code == 404
    assert (state.api_requests, state.api_rejections) == (3, 0)


@pytest.mark.parametrize("authorization", [None, "Basic Y29ycC1hcHA6ZGV2LXNlY3JldA==", "Bearer"])
async def test_api_without_bearer_token_gets_a_bare_challenge(authorization: str | None) -> None:
    app, state = devserver()
    headers = {} if authorization is None else {"Authorization": authorization}
    async with serve(app) as client:
        response = await client.get("/api/accounts", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="bog"'
    assert (state.api_requests, state.api_rejections) == (1, 1)


async def test_api_rejects_foreign_and_garbage_tokens(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    other_app, _ = devserver(flavour_name)
    async with serve(other_app) as other:
        foreign = (await request_token(other)).json()["access_token"]
    async with serve(app) as client:
        responses = [
            await client.get("/api/accounts", headers=bearer(token))
            for token in (foreign, "not-a-jwt", foreign.rsplit(".", 1)[0] + ".AAAA")
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == challenge("Invalid token")
    assert state.api_rejections == 3


async def test_api_rejects_expired_tokens(flavour_name: str) -> None:
    clock = FakeClock(1_700_000_000.5)
    app, _ = devserver(flavour_name, clock=clock, token_lifetime=30)
    async with serve(app) as client:
        token = (await request_token(client)).json()["access_token"]
        clock.now += 29
        fresh = await client.get("/api/accounts", headers=bearer(token))
        clock.now += 1
        expired = await client.get("/api/accounts", headers=bearer(token))
    assert fresh.status_code == 200
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == challenge("Token expired")


async def test_legacy_refresh_token_is_not_accepted_by_the_api() -> None:
    app, _ = devserver("legacy")
    async with serve(app) as client:
        refresh_token = (await request_token(client)).json()["refresh_token"]
        response = await client.get("/api/accounts", headers=bearer(refresh_token))
    assert response.headers["www-authenticate"] == challenge("Invalid token")


async def test_push_not_before_via_object(flavour_name: str) -> None:
    clock = FakeClock(1_700_000_000.5)
    app, state = devserver(flavour_name, clock=clock)
    async with serve(app) as client:
        revoked = (await request_token(client)).json()["access_token"]
        state.push_not_before()
        after_push = (await request_token(client)).json()
        stale = await client.get("/api/accounts", headers=bearer(revoked))
        valid = await client.get("/api/accounts", headers=bearer(after_push["access_token"]))
    assert stale.status_code == 401
    assert stale.headers["www-authenticate"] == challenge("Stale token")
    assert valid.status_code == 200
    assert after_push["not-before-policy"] == int(clock.now)


async def test_push_not_before_via_dev_endpoint(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        token = (await request_token(client)).json()["access_token"]
        pushed = await client.post("/_dev/not-before")
        stale = await client.get("/api/accounts", headers=bearer(token))
    assert pushed.status_code == 200
    assert pushed.json()["not_before"] == state.not_before > 0
    assert stale.headers["www-authenticate"] == challenge("Stale token")


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, "server_error"), (502, "server_error"), (503, "temporarily_unavailable")],
)
async def test_json_error_fault_for_count_requests(status: int, error: str) -> None:
    app, state = devserver()
    state.set_faults(status=status, count=2)
    async with serve(app) as client:
        responses = [await request_token(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert responses[0].json()["error"] == error
    assert state.token_requests == 3
    assert state.tokens_issued == 1


async def test_rate_limit_fault_with_retry_after() -> None:
    app, state = devserver()
    state.set_faults(status=429, retry_after=7)
    async with serve(app) as client:
        responses = [await request_token(client) for _ in range(3)]
    assert all(r.status_code == 429 for r in responses)
    assert all(r.headers["retry-after"] == "7" for r in responses)
    state.clear_faults()
    async with serve(app) as client:
        assert (await request_token(client)).status_code == 200


@pytest.mark.parametrize("status", [None, 502])
async def test_html_fault(status: int | None) -> None:
    app, state = devserver()
    state.set_faults(body_kind="html", status=status, count=1)
    async with serve(app) as client:
        response = await request_token(client)
    assert response.status_code == (status or 200)
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


async def test_truncated_fault() -> None:
    app, state = devserver()
    state.set_faults(body_kind="truncated", count=1)
    async with serve(app) as client:
        response = await request_token(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


async def test_not_json_fault() -> None:
    app, state = devserver()
    state.set_faults(body_kind="not-json", count=1)
    async with serve(app) as client:
        response = await request_token(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_latency_fault_delays_a_normal_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    app, state = devserver()
    state.set_faults(latency=0.2, count=1)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr("fastapi_corpauth.devserver._app.asyncio", SimpleNamespace(sleep=sleep))
    async with serve(app) as client:
        slow = await request_token(client)
        fast = await request_token(client)
    assert (slow.status_code, fast.status_code) == (200, 200)
    assert delays == [0.2]  # the first answer waited, the second did not


async def test_expired_token_fault(flavour_name: str) -> None:
    flavour = FLAVOURS[flavour_name]
    app, state = devserver(flavour_name, clock=FakeClock(1_700_000_000.5))
    state.set_faults(expired_token=True, count=1)
    async with serve(app) as client:
        body = (await request_token(client)).json()
        rejected = await client.get("/api/accounts", headers=bearer(body["access_token"]))
        normal = (await request_token(client)).json()
    if flavour.token_format != "opaque":
        claims = jwt_part(body["access_token"], 1)
        assert claims["exp"] == claims["iat"]
    if flavour.include_expires_in:
        assert body["expires_in"] == 0
        assert normal["expires_in"] == 300
    assert rejected.headers["www-authenticate"] == challenge("Token expired")


async def test_faults_via_dev_endpoints() -> None:
    app, state = devserver()
    async with serve(app) as client:
        configured = await client.post(
            "/_dev/faults", json={"status": 503, "retry_after": "3", "count": 1}
        )
        failed = await request_token(client)
        await client.post("/_dev/faults", json={"body_kind": "html"})
        assert (await request_token(client)).status_code == 200
        assert (await request_token(client)).headers["content-type"].startswith("text/html")
        cleared = await client.delete("/_dev/faults")
        recovered = await request_token(client)
        invalid = [
            await client.post("/_dev/faults", json=body)
            for body in ({}, {"body_kind": "xml"}, {"status": 503, "bogus": 1}, {"count": 0})
        ]
    assert configured.status_code == 200
    assert configured.json()["status"] == 503
    assert (failed.status_code, failed.headers["retry-after"]) == (503, "3")
    assert cleared.status_code == 204
    assert recovered.status_code == 200
    assert [r.status_code for r in invalid] == [422, 422, 422, 422]
    assert state.faults is None


# --- counters ----------------------------------------------------------------------------------


async def test_counters_and_dev_stats(flavour_name: str) -> None:
    app, state = devserver(flavour_name)
    async with serve(app) as client:
        token = (await request_token(client)).json()["access_token"]
        await request_token(client, headers=basic("corp-app", "wrong"))
        await request_token(client, grant_type="nope")
        await client.get("/api/accounts", headers=bearer(token))
        await client.get("/api/accounts")
        stats = (await client.get("/_dev/stats")).json()
        reset = (await client.post("/_dev/reset")).json()
    assert stats["token_requests"] == 3
    assert stats["tokens_issued"] == 1
    assert stats["api_requests"] == 2
    assert stats["api_rejections"] == 1
    assert stats["not_before_policy"] == 0
    assert (reset["token_requests"], reset["tokens_issued"], reset["api_requests"]) == (0, 0, 0)
    assert state.api_rejections == 0


# --- keys, introspection, key rotation, minted tokens ------------------------------------------

CERTS_PATH = "/realms/bog/protocol/openid-connect/certs"
INTROSPECT_PATH = "/realms/bog/protocol/openid-connect/token/introspect"


async def test_discovery_names_the_keys_and_introspection() -> None:
    app, _ = devserver()
    async with serve(app) as client:
        document = (await client.get("/realms/bog/.well-known/openid-configuration")).json()
    assert document["jwks_uri"] == "http://dev" + CERTS_PATH
    assert document["introspection_endpoint"] == "http://dev" + INTROSPECT_PATH
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_keys_are_published_and_rotate_with_a_grace_period() -> None:
    clock = FakeClock(1_700_000_000.0)
    app, state = devserver(clock=clock)
    async with serve(app) as client:
        first = (await client.get(CERTS_PATH)).json()["keys"]
        assert [k["kid"] for k in first] == [state.signing_key.kid]
        assert {k["kty"] for k in first} == {"RSA"} and "d" not in first[0]
        old_token = (await request_token(client)).json()["access_token"]
        rotated = (await client.post("/_dev/keys/rotate", json={"grace": 60})).json()
        assert rotated["kid"] == state.signing_key.kid != first[0]["kid"]
        assert rotated["published"] == [first[0]["kid"], rotated["kid"]]
        assert (await client.get("/api/accounts", headers=bearer(old_token))).status_code == 200
        clock.advance(60)
        keys = (await client.get(CERTS_PATH)).json()["keys"]
        assert [k["kid"] for k in keys] == [rotated["kid"]]
        old = await client.get("/api/accounts", headers=bearer(old_token))
        assert old.headers["www-authenticate"] == challenge("Invalid token")
        assert (await client.post("/_dev/keys/rotate", json={"grace": -1})).status_code == 422
    assert state.jwks_requests == 2


async def test_introspection_as_keycloak_answers_it() -> None:
    app, state = devserver()
    async with serve(app) as client:
        access = (await request_token(client)).json()["access_token"]
        answer = await client.post(
            INTROSPECT_PATH, data={"token": access}, headers=basic("corp-app", "dev-secret")
        )
        assert answer.status_code == 200
        body = answer.json()
        assert body["active"] is True
        assert body["client_id"] == "corp-app"
        assert body["username"] == "service-account-corp-app"
        assert body["token_type"] == "Bearer"
        for token in ("garbage", access[:-4] + "AAAA"):
            inactive = await client.post(
                INTROSPECT_PATH, data={"token": token}, headers=basic("corp-app", "dev-secret")
            )
            assert inactive.json() == {"active": False}
        unauthenticated = await client.post(INTROSPECT_PATH, data={"token": access})
        assert unauthenticated.status_code == 400
        wrong = await client.post(
            INTROSPECT_PATH, data={"token": access}, headers=basic("corp-app", "nope")
        )
        assert wrong.status_code == 401
        missing = await client.post(
            INTROSPECT_PATH, data={}, headers=basic("corp-app", "dev-secret")
        )
        assert missing.json()["error_description"] == "Token not provided."
    assert state.introspection_requests == 3


async def test_minted_customer_tokens_for_other_processes() -> None:
    app, state = devserver()
    async with serve(app) as client:
        minted = await client.post("/_dev/users/demo/tokens", json={"client_id": "corp-app"})
        assert minted.status_code == 200
        body = minted.json()
        assert body["token_type"] == "Bearer"
        claims = jwt_part(body["access_token"], 1)
        assert claims["azp"] == "corp-app"
        assert claims["preferred_username"] == "demo"
        assert isinstance(state.check_access_token(body["access_token"]), dict)
        code_flow = await client.post(
            "/_dev/users/demo/tokens", json={"implicit": False, "scope": "openid corp"}
        )
        assert {"refresh_token", "id_token"} <= set(code_flow.json())
        unknown = await client.post("/_dev/users/nobody/tokens", json={})
        assert unknown.status_code == 404
