"""The browser half of the devserver: authorization endpoint, sign-in form, userinfo, logout.

It behaves like Keycloak's ``AuthorizationEndpoint``, ``LoginActionsService``,
``UserInfoEndpoint`` and ``LogoutEndpoint`` closely enough that a login router and a
headless browser can sign in against it (see the project's protocol notes, §2.2-2.3, §2.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ._authorize import (
    RESPONSE_MODES,
    RESPONSE_TYPES,
    append_query,
    authorization_response,
    default_response_mode,
    redirect_uri_allowed,
    resolve_locale,
    valid_pkce_value,
)
from ._http import bearer_token, first_values, issuer_url, parse_form, realm_not_found, root_path
from ._pages import error_page, logged_out_page, login_page, logout_confirm_page, security_headers
from ._sessions import AuthorizationRequest, Locale, PendingLogout, ResponseMode, SsoSession
from ._state import LOGIN_TIMEOUT, DevClient, DevServerState

__all__ = ["LOGIN_ACTION_PATH", "SSO_COOKIE", "add_browser_routes"]

#: The dev SSO session cookie (Keycloak's name); HttpOnly, SameSite=Lax, realm path.
SSO_COOKIE = "KEYCLOAK_SESSION"
#: Where the sign-in form posts, relative to the realm (Keycloak's login-actions path).
LOGIN_ACTION_PATH = "login-actions/authenticate"
_LOGOUT_CONFIRM_PATH = "protocol/openid-connect/logout/logout-confirm"
_QUERY_NOT_ALLOWED = "Response_mode 'query' not allowed for implicit or hybrid flow"
_IMPLICIT_DISABLED = (
    "Client is not allowed to initiate browser login with given response_type. "
    "Implicit flow is disabled for the client."
)
_SESSION_NOT_FOUND = "User session not found or doesn't have client attached on it"


@dataclass(frozen=True, kw_only=True)
class _ErrorTarget:
    """Where and how authorization errors go once client and redirect URI are trusted."""

    redirect_uri: str
    state: str | None
    issuer: str
    locale: Locale


def _realm_path(request: Request, realm: str) -> str:
    return f"{root_path(request)}/realms/{realm}"


class BrowserFlow:
    """The browser endpoints of one devserver, bound to its state."""

    def __init__(self, state: DevServerState) -> None:
        self.state = state

    # --- helpers ---------------------------------------------------------------------------

    def _iss(self, issuer: str) -> list[tuple[str, str]]:
        return [("iss", issuer)] if self.state.flavour.issue_iss else []

    def error_redirect(
        self,
        target: _ErrorTarget,
        mode: ResponseMode,
        error: str,
        description: str | None = None,
    ) -> Response:
        """``error``, ``error_description``, ``state``, ``iss``: Keycloak's order."""
        params = [("error", error)]
        if description is not None:
            params.append(("error_description", description))
        if target.state is not None:
            params.append(("state", target.state))
        params += self._iss(target.issuer)
        return authorization_response(
            redirect_uri=target.redirect_uri,
            response_mode=mode,
            params=params,
            locale=target.locale,
        )

    def sso_session(self, request: Request) -> SsoSession | None:
        """The live dev SSO session named by the browser's cookie, if any."""
        session_id = request.cookies.get(SSO_COOKIE)
        return self.state.sso_sessions.get(session_id) if session_id else None

    def complete(self, auth: AuthorizationRequest, session: SsoSession) -> Response:
        """Answer a signed-in authorization request: a code or an implicit token."""
        state = self.state
        params: list[tuple[str, str]] = []
        if auth.state is not None:
            params.append(("state", auth.state))
        params.append(("session_state", session.session_id))
        params += self._iss(auth.issuer)
        if auth.response_type == "code":
            params.append(("code", state.issue_code(auth, session)))
        else:
            issued = state.issue_user_tokens(
                client=state.clients[auth.client_id],
                session=session,
                requested_scope=auth.scope,
                issuer=auth.issuer,
                implicit=True,
                nonce=auth.nonce,
            )
            params.append(("access_token", issued.access_token))
            params.append(("token_type", state.flavour.token_type))
            if state.flavour.include_expires_in:
                params.append(("expires_in", str(issued.expires_in)))
        return authorization_response(
            redirect_uri=auth.redirect_uri,
            response_mode=auth.response_mode,
            params=params,
            locale=auth.locale,
        )

    def set_sso_cookie(self, response: Response, request: Request, session: SsoSession) -> None:
        response.set_cookie(
            SSO_COOKIE,
            session.session_id,
            max_age=int(self.state.sso_lifetime(session)) or None,
            path=f"{_realm_path(request, self.state.realm)}/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    def clear_sso_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            SSO_COOKIE,
            path=f"{_realm_path(request, self.state.realm)}/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    # --- authorization endpoint ------------------------------------------------------------

    def authorize(self, request: Request, params: Mapping[str, str]) -> Response:
        """``GET .../protocol/openid-connect/auth``: validate, then sign in or answer at once."""
        state = self.state
        state.authorize_requests += 1
        locale = resolve_locale(params.get("kc_locale"), params.get("ui_locales"))
        # RFC 6749 §4.1.2.1: without a trusted client and redirect URI, never redirect.
        client_id = params.get("client_id")
        if not client_id:
            return error_page(locale=locale, message="missing_client_id")
        client = state.clients.get(client_id)
        if client is None:
            return error_page(locale=locale, message="client_not_found")
        redirect_param = params.get("redirect_uri")
        if redirect_param is None:
            if len(client.redirect_uris) != 1:
                return error_page(locale=locale, message="invalid_redirect_uri")
            redirect_uri = client.redirect_uris[0]
        elif redirect_uri_allowed(client, redirect_param):
            redirect_uri = redirect_param
        else:
            return error_page(locale=locale, message="invalid_redirect_uri")
        issuer = issuer_url(request, state.realm)
        target = _ErrorTarget(
            redirect_uri=redirect_uri, state=params.get("state"), issuer=issuer, locale=locale
        )
        requested_mode = params.get("response_mode")
        known_mode = next((m for m in RESPONSE_MODES if m == requested_mode), None)
        response_type = params.get("response_type")
        if response_type is None:
            return self.error_redirect(
                target, known_mode or "query", "invalid_request", "Missing parameter: response_type"
            )
        parsed_type = next((t for t in RESPONSE_TYPES if t == response_type), None)
        if parsed_type is None:
            return self.error_redirect(target, known_mode or "query", "unsupported_response_type")
        mode = known_mode or default_response_mode(parsed_type)
        if requested_mode is not None and known_mode is None:
            return self.error_redirect(
                target, mode, "invalid_request", "Invalid parameter: response_mode"
            )
        implicit = parsed_type == "token"
        if implicit and mode == "query" and not state.flavour.implicit_query_allowed:
            return self.error_redirect(target, "query", "invalid_request", _QUERY_NOT_ALLOWED)
        if implicit and not client.implicit_enabled:
            return self.error_redirect(target, mode, "unauthorized_client", _IMPLICIT_DISABLED)
        scope = params.get("scope", "")
        if not set(scope.split()) <= state.login_scopes:
            return self.error_redirect(target, mode, "invalid_scope", f"Invalid scopes: {scope}")
        code_challenge = None
        if not implicit:
            pkce_error = _check_pkce(params)
            if pkce_error is not None:
                return self.error_redirect(target, mode, "invalid_request", pkce_error)
            code_challenge = params.get("code_challenge")
        auth = AuthorizationRequest(
            client_id=client.client_id,
            response_type=parsed_type,
            response_mode=mode,
            redirect_uri=redirect_uri,
            redirect_uri_param=redirect_param,
            scope=scope,
            state=params.get("state"),
            nonce=params.get("nonce"),
            code_challenge=code_challenge,
            locale=locale,
            issuer=issuer,
        )
        prompts = set(params.get("prompt", "").split())
        session = self.sso_session(request)
        if session is not None and "login" not in prompts:
            return self.complete(auth, session)
        if "none" in prompts:
            return self.error_redirect(target, mode, "login_required")
        session_code = state.pending_logins.add(auth, lifetime=LOGIN_TIMEOUT)
        return self.sign_in_page(request, auth, session_code)

    def sign_in_page(
        self,
        request: Request,
        auth: AuthorizationRequest,
        session_code: str,
        *,
        username: str = "",
        error: str | None = None,
    ) -> Response:
        return login_page(
            locale=auth.locale,
            realm=self.state.realm,
            action_url=f"{_realm_path(request, self.state.realm)}/{LOGIN_ACTION_PATH}",
            session_code=session_code,
            redirect_uri=auth.redirect_uri,
            username=username,
            error=error,
        )

    def authenticate(self, request: Request, form: Mapping[str, str]) -> Response:
        """``POST .../login-actions/authenticate``: the sign-in form's Sign in or Cancel."""
        state = self.state
        session_code = form.get("session_code", "")
        auth = state.pending_logins.get(session_code) if session_code else None
        if auth is None:
            return error_page(locale="en", message="login_timeout")
        if "cancel" in form:
            state.pending_logins.pop(session_code)
            target = _ErrorTarget(
                redirect_uri=auth.redirect_uri,
                state=auth.state,
                issuer=auth.issuer,
                locale=auth.locale,
            )
            return self.error_redirect(target, auth.response_mode, "access_denied")
        username = form.get("username", "")
        user = state.authenticate_user(username, form.get("password", ""))
        if user is None:
            state.login_failures += 1
            return self.sign_in_page(
                request, auth, session_code, username=username, error="invalid_credentials"
            )
        state.pending_logins.pop(session_code)
        previous = request.cookies.get(SSO_COOKIE)
        if previous:
            state.sso_sessions.pop(previous)
        state.logins += 1
        session = state.start_sso_session(user)
        response = self.complete(auth, session)
        self.set_sso_cookie(response, request, session)
        return response

    # --- userinfo --------------------------------------------------------------------------

    def userinfo(self, request: Request) -> Response:
        """``GET|POST .../userinfo``: the signed-in user's profile for a valid user token."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return self._userinfo_rejection("Token not provided")
        verdict = self.state.check_access_token(token)
        if not isinstance(verdict, dict):
            return self._userinfo_rejection("Token verification failed")
        is_user_token = "clientId" not in verdict
        session_id = verdict.get("sid")
        if is_user_token and (
            not isinstance(session_id, str) or self.state.sso_sessions.get(session_id) is None
        ):
            return self._userinfo_rejection(_SESSION_NOT_FOUND)
        keys = ("sub", "preferred_username", "name", "email")
        return JSONResponse({key: verdict[key] for key in keys if key in verdict})

    def _userinfo_rejection(self, description: str) -> Response:
        challenge = (
            f'Bearer realm="{self.state.realm}", error="invalid_token", '
            f'error_description="{description}"'
        )
        return JSONResponse(
            {"error": "invalid_token", "error_description": description},
            status_code=401,
            headers={"WWW-Authenticate": challenge, **security_headers()},
        )

    # --- logout ----------------------------------------------------------------------------

    def logout(self, request: Request, params: Mapping[str, str]) -> Response:
        """``GET|POST .../logout``: RP-initiated logout as in Keycloak >= 18."""
        state = self.state
        locale = resolve_locale(None, params.get("ui_locales"))
        redirect = params.get("post_logout_redirect_uri")
        hint = params.get("id_token_hint")
        hint_claims: dict[str, Any] | None = None
        if hint is not None:
            hint_claims = state.verify_id_token(hint)
            if hint_claims is None:
                return error_page(locale=locale, message="invalid_id_token_hint")
        client: DevClient | None = None
        client_id = params.get("client_id")
        if client_id is not None:
            client = state.clients.get(client_id)
            if client is None:
                return error_page(locale=locale, message="client_not_found")
            if hint_claims is not None and hint_claims.get("aud") != client_id:
                return error_page(locale=locale, message="invalid_id_token_hint")
        elif hint_claims is not None:
            client = state.clients.get(str(hint_claims.get("aud")))
        if redirect is not None:
            if client is None:
                return error_page(locale=locale, message="logout_client_required")
            if not redirect_uri_allowed(client, redirect):
                return error_page(locale=locale, message="invalid_post_logout_redirect")
        pending = PendingLogout(
            post_logout_redirect_uri=redirect, state=params.get("state"), locale=locale
        )
        if hint_claims is not None:
            return self.finish_logout(request, pending)
        session_code = state.pending_logouts.add(pending, lifetime=LOGIN_TIMEOUT)
        return logout_confirm_page(
            locale=locale,
            action_url=f"{_realm_path(request, state.realm)}/{_LOGOUT_CONFIRM_PATH}",
            session_code=session_code,
            redirect_uri=redirect,
        )

    def confirm_logout(self, request: Request, form: Mapping[str, str]) -> Response:
        """The confirmation page's Logout button."""
        session_code = form.get("session_code", "")
        pending = self.state.pending_logouts.pop(session_code) if session_code else None
        if pending is None:
            return error_page(locale="en", message="logout_timeout")
        return self.finish_logout(request, pending)

    def finish_logout(self, request: Request, pending: PendingLogout) -> Response:
        """End the browser's dev SSO session, clear its cookie and leave."""
        session_id = request.cookies.get(SSO_COOKIE)
        if session_id:
            self.state.sso_sessions.pop(session_id)
        self.state.logouts += 1
        response: Response
        if pending.post_logout_redirect_uri is None:
            response = logged_out_page(locale=pending.locale)
        else:
            extra = [("state", pending.state)] if pending.state is not None else []
            response = RedirectResponse(
                append_query(pending.post_logout_redirect_uri, extra),
                status_code=302,
                headers=security_headers(),
            )
        self.clear_sso_cookie(response, request)
        return response


def _check_pkce(params: Mapping[str, str]) -> str | None:
    """Keycloak's ``checkPKCEParams`` for the code flow, allowing only S256."""
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        return None if method is None else "Missing parameter: code_challenge"
    if (method or "plain") != "S256":
        return "Invalid parameter: code_challenge_method"
    if not valid_pkce_value(challenge):
        return "Invalid parameter: code_challenge"
    return None


async def _form(request: Request) -> dict[str, str]:
    return parse_form(await request.body(), request.headers.get("content-type"))


def add_browser_routes(app: FastAPI, state: DevServerState) -> BrowserFlow:
    """Register the authorization, sign-in, userinfo and logout endpoints on ``app``."""
    flow = BrowserFlow(state)
    realm_prefix = "/realms/{realm_name}"
    oidc = f"{realm_prefix}/protocol/openid-connect"

    @app.get(f"{oidc}/auth")
    async def authorization_endpoint(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        return flow.authorize(request, first_values(request.query_params.multi_items()))

    @app.post(f"{realm_prefix}/{LOGIN_ACTION_PATH}")
    async def login_action(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        return flow.authenticate(request, await _form(request))

    @app.api_route(f"{oidc}/userinfo", methods=["GET", "POST"])
    async def userinfo_endpoint(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        return flow.userinfo(request)

    @app.api_route(f"{oidc}/logout", methods=["GET", "POST"])
    async def logout_endpoint(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        if request.method == "POST":
            params = await _form(request)
        else:
            params = first_values(request.query_params.multi_items())
        return flow.logout(request, params)

    @app.post(f"{realm_prefix}/{_LOGOUT_CONFIRM_PATH}")
    async def logout_confirm(realm_name: str, request: Request) -> Response:
        if realm_name != state.realm:
            return realm_not_found()
        return flow.confirm_logout(request, await _form(request))

    return flow
