"""The devserver's HTTP surface: Keycloak's discovery and token endpoints, a sample bank API
and ``/_dev`` controls for tests that run the server in another process. The browser
endpoints (authorization, sign-in, userinfo, logout) live in ``_login``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ._authorize import pkce_matches
from ._basic import ClientAuthParseError, parse_basic_credentials
from ._flavours import FLAVOURS, Flavour
from ._http import NO_STORE, bearer_token, issuer_url, oauth_error, parse_form, realm_not_found
from ._jwt import SigningKey
from ._login import add_browser_routes
from ._state import (
    DEFAULT_ACCOUNTS,
    SSO_SESSION_LIFETIME,
    SSO_SESSION_MAX,
    DevClient,
    DevServerState,
    FaultBodyKind,
    FaultPlan,
    SampleAccount,
)
from ._users import DEFAULT_USERS, DevUser

__all__ = ["DEFAULT_CLIENTS", "create_devserver"]

DEFAULT_CLIENTS: tuple[DevClient, ...] = (
    DevClient(client_id="corp-app", client_secret="dev-secret"),
    #: Another application of the realm: its customers' tokens must not sign in to corp-app.
    DevClient(client_id="other-app", client_secret="other-secret"),
)

_UNEXPECTED_AUTH_ERROR = "Unexpected error when authenticating client"


@dataclass(frozen=True, kw_only=True)
class GrantContext:
    """Everything a grant handler needs once the client has authenticated."""

    state: DevServerState
    client: DevClient
    form: Mapping[str, str]
    issuer: str
    fault: FaultPlan | None


GrantHandler = Callable[[GrantContext], Response]


def _client_credentials_grant(context: GrantContext) -> Response:
    """RFC 6749 §4.4 as Keycloak implements it; ``code`` and ``redirect_uri`` are ignored."""
    state, flavour = context.state, context.state.flavour
    if context.client.public:
        return oauth_error(
            401, "unauthorized_client", "Public client not allowed to retrieve service account"
        )
    if not context.client.service_accounts_enabled:
        return oauth_error(
            flavour.service_account_disabled_status,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        )
    requested_scope = context.form.get("scope")
    # Keycloak accepts openid here too (an app with one scope setting for both grants).
    if requested_scope is not None and not set(requested_scope.split()) <= state.login_scopes:
        return oauth_error(400, "invalid_scope", f"Invalid scopes: {requested_scope}")
    issued = state.issue_client_credentials(
        context.client,
        issuer=context.issuer,
        expired=context.fault is not None and context.fault.expired_token,
    )
    body: dict[str, Any] = {"access_token": issued.access_token}
    if flavour.include_expires_in:
        body["expires_in"] = issued.expires_in
    body["refresh_expires_in"] = issued.refresh_expires_in
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    body["token_type"] = flavour.token_type
    body["not-before-policy"] = state.not_before_policy
    if issued.session_state is not None:
        body["session_state"] = issued.session_state
    body["scope"] = issued.scope
    return JSONResponse(body, headers=NO_STORE)


def _authorization_code_grant(context: GrantContext) -> Response:
    """RFC 6749 §4.1.3 with PKCE (RFC 7636), in Keycloak's order of checks.

    The code is consumed before any check, so a failed exchange cannot be retried.
    """
    state, flavour, form = context.state, context.state.flavour, context.form
    code = form.get("code")
    if code is None:
        return oauth_error(400, "invalid_request", "Missing parameter: code")
    issued_code = state.codes.pop(code)
    if issued_code is None:
        return oauth_error(400, "invalid_grant", "Code not valid")
    auth = issued_code.request
    if auth.client_id != context.client.client_id:
        return oauth_error(400, "invalid_grant", "Auth error")
    if state.sso_sessions.get(issued_code.session.session_id) is None:
        return oauth_error(400, "invalid_grant", "Session not active")
    if auth.redirect_uri_param is not None and form.get("redirect_uri") != auth.redirect_uri_param:
        return oauth_error(400, "invalid_grant", "Incorrect redirect_uri")
    if auth.code_challenge is not None:
        verifier = form.get("code_verifier")
        if verifier is None:
            return oauth_error(400, "invalid_grant", "PKCE code verifier not specified")
        if not pkce_matches(verifier, auth.code_challenge):
            return oauth_error(400, "invalid_grant", "PKCE verification failed: Code mismatch")
    issued = state.issue_user_tokens(
        client=context.client,
        session=issued_code.session,
        requested_scope=auth.scope,
        issuer=auth.issuer,
        implicit=False,
        nonce=auth.nonce,
    )
    # Keycloak's AccessTokenResponse field order.
    body: dict[str, Any] = {"access_token": issued.access_token}
    if flavour.include_expires_in:
        body["expires_in"] = issued.expires_in
    body["refresh_expires_in"] = issued.refresh_expires_in
    body["refresh_token"] = issued.refresh_token
    body["token_type"] = flavour.token_type
    if issued.id_token is not None:
        body["id_token"] = issued.id_token
    body["not-before-policy"] = state.not_before_policy
    body["session_state"] = issued.session_state
    body["scope"] = issued.scope
    return JSONResponse(body, headers=NO_STORE)


def _refresh_token_grant(context: GrantContext) -> Response:
    """RFC 6749 §6 as Keycloak answers it, rotation included."""
    state, flavour = context.state, context.state.flavour
    refresh_token = context.form.get("refresh_token")
    if not refresh_token:
        return oauth_error(400, "invalid_request", "Missing parameter: refresh_token")
    issued = state.refresh(context.client, refresh_token, issuer=context.issuer)
    if isinstance(issued, str):
        return oauth_error(400, "invalid_grant", issued)
    body: dict[str, Any] = {"access_token": issued.access_token}
    if flavour.include_expires_in:
        body["expires_in"] = issued.expires_in
    body["refresh_expires_in"] = issued.refresh_expires_in
    body["refresh_token"] = issued.refresh_token
    body["token_type"] = flavour.token_type
    if issued.id_token is not None:
        body["id_token"] = issued.id_token
    body["not-before-policy"] = state.not_before_policy
    body["session_state"] = issued.session_state
    body["scope"] = issued.scope
    return JSONResponse(body, headers=NO_STORE)


#: The grants the token endpoint understands; discovery advertises whatever it holds.
GRANT_HANDLERS: Mapping[str, GrantHandler] = {
    "authorization_code": _authorization_code_grant,
    "client_credentials": _client_credentials_grant,
    "refresh_token": _refresh_token_grant,
}


def authenticate_client(
    state: DevServerState, form: Mapping[str, str], authorization: str | None
) -> DevClient | Response:
    """Keycloak's ``ClientIdAndSecretAuthenticator``: Basic header, overridden by form fields.

    Each form field overrides its half of the header separately, and the failure answers
    come from the flavour because they changed across Keycloak versions.
    """
    flavour = state.flavour
    client_id: str | None = None
    client_secret: str | None = None
    if authorization is not None:
        try:
            pair = parse_basic_credentials(authorization, url_decode=flavour.basic_url_decode)
        except ClientAuthParseError:
            return oauth_error(400, "unauthorized_client", _UNEXPECTED_AUTH_ERROR)
        if pair is not None:
            client_id, client_secret = pair
        elif "client_id" not in form:
            # Keycloak challenges a non-Basic header (e.g. a browser's Negotiate) this way.
            return Response(
                status_code=401, headers={"WWW-Authenticate": f'Basic realm="{state.realm}"'}
            )
    client_id = form.get("client_id", client_id)
    client_secret = form.get("client_secret", client_secret)
    if client_id is None:
        return oauth_error(400, "invalid_client", "Missing client_id parameter")
    client = state.clients.get(client_id)
    if client is None:
        return oauth_error(
            flavour.unknown_client_status,
            flavour.unknown_client_error,
            flavour.unknown_client_description,
        )
    if client.public:
        # Keycloak's public clients authenticate by client_id alone; a secret is ignored.
        return client
    if client_secret is None:
        return oauth_error(
            flavour.missing_secret_status,
            flavour.missing_secret_error,
            flavour.missing_secret_description,
        )
    if not hmac.compare_digest(client_secret.encode(), client.client_secret.encode()):
        return oauth_error(
            flavour.wrong_secret_status,
            flavour.wrong_secret_error,
            flavour.wrong_secret_description,
        )
    return client


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def fault_response(fault: FaultPlan) -> Response:
    """The broken answer a proxy, gateway or misconfigured server gives instead of a token."""
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    kind: FaultBodyKind = fault.body_kind or "json-error"
    if kind == "json-error":
        status = fault.status or 500
        error = "temporarily_unavailable" if status in (429, 503) else "server_error"
        body = {"error": error, "error_description": _reason_phrase(status)}
        return JSONResponse(body, status_code=status, headers=headers)
    status = fault.status or 200
    if kind == "html":
        title = "Service maintenance" if status == 200 else f"{status} {_reason_phrase(status)}"
        page = (
            f"<!DOCTYPE html><html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>Please try again later.</p></body></html>"
        )
        return HTMLResponse(page, status_code=status, headers=headers)
    if kind == "truncated":
        cut_off = '{"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAw'
        return Response(cut_off, status_code=status, media_type="application/json", headers=headers)
    return PlainTextResponse("upstream connect error", status_code=status, headers=headers)


def discovery_document(state: DevServerState, issuer: str) -> dict[str, Any]:
    """The subset of Keycloak's OpenID configuration a client of this realm relies on."""
    oidc = f"{issuer}/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": f"{oidc}/token",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "end_session_endpoint": f"{oidc}/logout",
        "jwks_uri": f"{oidc}/certs",
        "introspection_endpoint": f"{oidc}/token/introspect",
        "revocation_endpoint": f"{oidc}/revoke",
        "grant_types_supported": list(GRANT_HANDLERS),
        "response_types_supported": ["code", "token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": sorted(state.known_scopes),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "authorization_response_iss_parameter_supported": state.flavour.issue_iss,
    }


class FaultConfig(BaseModel):
    """JSON body of ``POST /_dev/faults``; same fields as ``DevServerState.set_faults``."""

    model_config = ConfigDict(extra="forbid")

    status: int | None = Field(default=None, ge=100, le=599)
    body_kind: FaultBodyKind | None = None
    retry_after: int | str | None = None
    latency: float = Field(default=0.0, ge=0)
    expired_token: bool = False
    count: int | None = Field(default=None, ge=1)


class MintRequest(BaseModel):
    """JSON body of ``POST /_dev/users/{username}/tokens``."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = DEFAULT_CLIENTS[0].client_id
    scope: str = "corp"
    implicit: bool = True


class KeyRotation(BaseModel):
    """JSON body of ``POST /_dev/keys/rotate``: how long the old keys stay published."""

    model_config = ConfigDict(extra="forbid")

    grace: float = Field(default=0.0, ge=0)


def create_devserver(
    *,
    realm: str = "bog",
    clients: Sequence[DevClient] = DEFAULT_CLIENTS,
    flavour: str | Flavour = "modern",
    token_lifetime: float = 300.0,
    clock: Callable[[], float] = time.time,
    signing_key: SigningKey | None = None,
    accounts: Sequence[SampleAccount] = DEFAULT_ACCOUNTS,
    users: Sequence[DevUser] = DEFAULT_USERS,
    implicit_token_lifetime: float = 900.0,
    sso_idle: float = SSO_SESSION_LIFETIME,
    sso_max: float = SSO_SESSION_MAX,
    revoke_refresh_tokens: bool = True,
    dev_token: str | None = None,
) -> FastAPI:
    """Build a Keycloak-compatible authorization server plus a sample protected bank API.

    ``flavour`` names an entry of :data:`FLAVOURS` or is a custom :class:`Flavour`.
    ``clock`` decides token issue and expiry times, so tests can expire tokens instantly.
    A fresh random ``signing_key`` (made when first needed) makes tokens from any other
    devserver foreign; pass one to share it, e.g. between test servers.
    ``users`` may sign in on the login page (default ``demo``/``demo``); implicit-flow
    tokens live ``implicit_token_lifetime`` seconds, code-flow ones ``token_lifetime``.
    Browser sessions end after ``sso_idle`` seconds without a refresh and ``sso_max``
    after the sign-in (Keycloak's SSO Session Idle and Max); with
    ``revoke_refresh_tokens`` each refresh token works once.

    ``dev_token``, when given, guards the ``/_dev`` controls (revoking every token,
    faults, ending sessions): they answer 404 unless the request carries it in an
    ``X-Dev-Token`` header. A server reachable by anyone else must have one.
    """
    resolved_flavour = FLAVOURS[flavour] if isinstance(flavour, str) else flavour
    state = DevServerState(
        realm=realm,
        clients=clients,
        flavour=resolved_flavour,
        token_lifetime=token_lifetime,
        clock=clock,
        signing_key=signing_key,
        accounts=accounts,
        users=users,
        implicit_token_lifetime=implicit_token_lifetime,
        sso_idle=sso_idle,
        sso_max=sso_max,
        revoke_refresh_tokens=revoke_refresh_tokens,
    )
    app = FastAPI(
        title=f"fastapi-corpauth devserver ({resolved_flavour.name})",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.devserver = state

    @app.get("/realms/{realm_name}/.well-known/openid-configuration")
    async def openid_configuration(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        return JSONResponse(discovery_document(state, issuer_url(request, realm_name)))

    @app.post("/realms/{realm_name}/protocol/openid-connect/token")
    async def token_endpoint(realm_name: str, request: Request) -> Response:
        state.token_requests += 1
        fault = state.take_fault()
        if fault is not None and fault.latency:
            await asyncio.sleep(fault.latency)
        if fault is not None and fault.replaces_answer:
            return fault_response(fault)
        if realm_name != state.realm:
            return realm_not_found()
        form = parse_form(await request.body(), request.headers.get("content-type"))
        grant_type = form.get("grant_type")
        if grant_type is None:
            return oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        grant = GRANT_HANDLERS.get(grant_type)
        if grant is None:
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        client = authenticate_client(state, form, request.headers.get("authorization"))
        if isinstance(client, Response):
            return client
        context = GrantContext(
            state=state,
            client=client,
            form=form,
            issuer=issuer_url(request, realm_name),
            fault=fault,
        )
        return grant(context)

    @app.get("/realms/{realm_name}/protocol/openid-connect/certs")
    async def certs(realm_name: str) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        state.jwks_requests += 1
        return JSONResponse(state.jwks())

    @app.post("/realms/{realm_name}/protocol/openid-connect/token/introspect")
    async def introspect(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        form = parse_form(await request.body(), request.headers.get("content-type"))
        client = authenticate_client(state, form, request.headers.get("authorization"))
        if isinstance(client, Response):
            return client
        if client.public:
            return oauth_error(403, "invalid_request", "Client not allowed.")
        token = form.get("token")
        if not token:
            return oauth_error(400, "invalid_request", "Token not provided.")
        return JSONResponse(state.introspect(token), headers=NO_STORE)

    def authorize_api_call(request: Request) -> dict[str, Any] | Response:
        """The claims of the caller's valid token, or the 401 to answer."""
        state.api_requests += 1
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            challenge = f'Bearer realm="{state.realm}"'
        else:
            verdict = state.check_access_token(token)
            if isinstance(verdict, dict):
                return verdict
            challenge = (
                f'Bearer realm="{state.realm}", error="invalid_token", '
                f'error_description="{verdict}"'
            )
        state.api_rejections += 1
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    add_browser_routes(app, state)

    @app.get("/api/accounts")
    async def list_accounts(request: Request) -> Response:
        claims = authorize_api_call(request)
        if isinstance(claims, Response):
            return claims
        # A customer sees their own company's accounts; the service account sees all.
        company = claims.get("company")
        accounts = [
            a.as_json() for a in state.accounts.values() if company is None or a.holder == company
        ]
        return JSONResponse({"accounts": accounts})

    @app.get("/api/accounts/{account_id}")
    async def get_account(account_id: str, request: Request) -> Response:
        claims = authorize_api_call(request)
        if isinstance(claims, Response):
            return claims
        account = state.accounts.get(account_id)
        if account is None:
            return JSONResponse({"error": "account_not_found"}, status_code=404)
        return JSONResponse(account.as_json())

    async def dev_token_given(request: Request) -> None:
        """The controls answer only a caller that knows the server's dev token."""
        if dev_token is None:
            return
        given = request.headers.get("x-dev-token", "")
        if not hmac.compare_digest(given.encode(), dev_token.encode()):
            raise HTTPException(status_code=404)

    controls = APIRouter(prefix="/_dev", dependencies=[Depends(dev_token_given)])

    @controls.post("/not-before")
    async def push_not_before() -> dict[str, Any]:
        state.push_not_before()
        return state.stats()

    @controls.get("/stats")
    async def stats() -> dict[str, Any]:
        return state.stats()

    @controls.post("/faults")
    async def set_faults(config: FaultConfig) -> Response:
        try:
            plan = state.set_faults(**config.model_dump())
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(asdict(plan))

    @controls.delete("/faults", status_code=204)
    async def clear_faults() -> Response:
        state.clear_faults()
        return Response(status_code=204)

    @controls.post("/users/{username}/tokens")
    async def mint_tokens(username: str, request: Request, config: MintRequest) -> Response:
        """A customer's tokens as a sign-in of ``client_id`` would issue them, without the
        sign-in pages: for load tests and desktop-app tests in other processes."""
        if username not in state.users or config.client_id not in state.clients:
            return JSONResponse({"detail": "unknown user or client"}, status_code=404)
        issued = state.mint_user_tokens(
            client_id=config.client_id,
            issuer=issuer_url(request, state.realm),
            username=username,
            scope=config.scope,
            implicit=config.implicit,
        )
        body = {k: v for k, v in asdict(issued).items() if v is not None}
        return JSONResponse({**body, "token_type": "Bearer"}, headers=NO_STORE)

    @controls.post("/sso/end")
    async def end_sso_sessions() -> dict[str, int]:
        """Sign every browser out at the server, as an administrator can."""
        return {"ended": state.end_sso_sessions()}

    @controls.post("/keys/rotate")
    async def rotate_keys(config: KeyRotation) -> dict[str, Any]:
        key = state.rotate_keys(grace=config.grace)
        return {"kid": key.kid, "published": [k.kid for k in state.published_keys()]}

    @controls.post("/reset")
    async def reset_counters() -> dict[str, Any]:
        state.reset_counters()
        return state.stats()

    app.include_router(controls)
    return app
