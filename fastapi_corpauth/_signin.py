"""Browser sign-in as a service: start, complete and end, with no web framework in sight.

``SignIn`` holds the rules that decide whether a callback becomes a session; the router
(``_router``) only turns requests into calls here and results into responses. A
callback creates a session only once:

1. its ``state`` is one this browser started, unused and unexpired (login CSRF);
2. its ``iss`` names the configured issuer, and is present when the server promised it
   (RFC 9207 mix-up defence);
3. it carries no error, and its token or code arrived in the response mode asked for;
4. the token is one the bank vouches for as an access token of this client, checked
   with the issuer's keys or its introspection endpoint (``TokenVerifier``); in the code
   flow the token comes from the back channel and is verified all the same, and an ID
   token must carry this sign-in's ``nonce``.

The session's identity is what the bank vouched for, never what the browser sent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from ._config import ClientCredentials, SignInOptions
from ._discovery import Discovery
from ._errors import (
    CallbackInvalid,
    CredentialsRejected,
    MalformedTokenResponse,
    TokenEndpointUnavailable,
)
from ._login_protocol import (
    AuthorizationResult,
    ResponseMode,
    authorize_url,
    check_issuer,
    check_response_mode,
    end_session_url,
    expected_response_mode,
    new_nonce,
    parse_callback,
    pkce_pair,
    raise_for_error,
)
from ._protocol import authorization_code_request, parse_token_response, token_from_fields
from ._sessions import PendingLogin, SessionManager
from ._token import Token
from ._verification import VerifiedToken
from ._verifier import TokenVerifier

__all__ = ["CompletedSignIn", "SignIn"]

logger = logging.getLogger("fastapi_corpauth.login")


@dataclass(frozen=True)
class CompletedSignIn:
    """A new session, and where the browser goes next."""

    session_id: str
    next_url: str

    def __repr__(self) -> str:
        return f"CompletedSignIn(next_url={self.next_url!r})"


class SignIn:
    """Starts, completes and ends browser sign-ins for one client."""

    def __init__(
        self,
        *,
        options: SignInOptions,
        credentials: ClientCredentials,
        sessions: SessionManager,
        discovery: Discovery,
        verifier: TokenVerifier,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._credentials = credentials
        self._sessions = sessions
        self._discovery = discovery
        self._verifier = verifier
        self._http = http
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"SignIn(client_id={self._credentials.client_id!r}, "
            f"response_type={self.options.response_type!r})"
        )

    @property
    def client_ids(self) -> frozenset[str]:
        """The only client whose tokens may sign a customer in here: this one."""
        return frozenset({self._credentials.client_id})

    async def start(self, *, browser_id: str, next_url: str, locale: str, redirect_uri: str) -> str:
        """Remember a new sign-in of this browser; return the authorization URL to visit.

        Raises:
            StoreUnavailable: the session store is down.
        """
        options = self.options
        code_flow = options.response_type == "code"
        verifier, challenge = pkce_pair() if code_flow else (None, None)
        # Old Keycloak wants a nonce for any request with openid; the code flow checks it.
        nonce = new_nonce() if "openid" in options.scope.split() else None
        mode = expected_response_mode(options.response_type, options.response_mode)
        state = await self._sessions.begin_login(
            browser_id=browser_id,
            next_url=next_url,
            redirect_uri=redirect_uri,
            response_type=options.response_type,
            response_mode=mode,
            code_verifier=verifier,
            locale=locale,
            nonce=nonce,
        )
        metadata = await self._discovery.metadata()
        return authorize_url(
            endpoint=metadata.authorization_endpoint,
            client_id=self._credentials.client_id,
            response_type=options.response_type,
            scope=options.scope,
            redirect_uri=redirect_uri,
            state=state,
            locale=locale,
            response_mode=options.response_mode,
            code_challenge=challenge,
            nonce=nonce,
        )

    async def complete(
        self, *, params: Mapping[str, str], arrived_in: ResponseMode, browser_id: str | None
    ) -> CompletedSignIn:
        """Turn the authorization response into a session, or refuse it.

        Raises:
            LoginError: ``StateError``, ``IssuerMismatch``, ``AuthorizationDenied``,
                ``ResponseModeMismatch`` or ``CallbackInvalid``.
            VerificationError: ``InvalidToken`` (the bank does not vouch for the token)
                or ``VerificationUnavailable`` (its keys or introspection are unreachable).
            TokenError: the code exchange failed.
            StoreUnavailable: the session store is down.
        """
        result = parse_callback(params)
        pending = await self._sessions.consume_state(state=result.state, browser_id=browser_id)
        metadata = await self._discovery.metadata()
        check_issuer(result, metadata.issuer, required=metadata.iss_parameter_supported)
        raise_for_error(result)
        check_response_mode(result, arrived_in=arrived_in, expected=pending.response_mode)
        if pending.response_type == "code":
            token, identity = await self._from_code(result, pending)
        else:
            token, identity = await self._from_implicit(result)
        if identity.expires_at is not None and identity.expires_at < token.expires_at:
            token = dataclasses.replace(token, expires_at=identity.expires_at)
        if token.is_expired(self._clock()):
            raise CallbackInvalid("the bank's answer carries an expired token")
        session_id = await self._sessions.create_session(
            token=token, identity=identity, replaces=browser_id
        )
        return CompletedSignIn(session_id=session_id, next_url=pending.next_url)

    async def end_session_url(self, *, return_to: str, locale: str) -> str | None:
        """Where to end the bank's SSO session too, or None when the bank has no
        end-session endpoint (then only the local session ends)."""
        metadata = await self._discovery.metadata()
        if metadata.end_session_endpoint is None:
            return None
        return end_session_url(
            endpoint=metadata.end_session_endpoint,
            client_id=self._credentials.client_id,
            post_logout_redirect_uri=return_to,
            locale=locale,
        )

    async def _from_implicit(self, result: AuthorizationResult) -> tuple[Token, VerifiedToken]:
        if not result.access_token or result.code:
            raise CallbackInvalid("expected an access token from the bank")
        fields = {
            "access_token": result.access_token,
            "token_type": result.token_type or "",
            "expires_in": result.expires_in,
            "session_state": result.session_state,
        }
        try:
            token = token_from_fields(
                fields, now=self._clock(), default_lifetime=self.options.default_token_lifetime
            )
        except MalformedTokenResponse as exc:
            raise CallbackInvalid("the bank's callback does not carry a Bearer token") from exc
        identity = await self._verifier.verify_access_token(
            token.access_token, client_ids=self.client_ids
        )
        return token, identity

    async def _from_code(
        self, result: AuthorizationResult, pending: PendingLogin
    ) -> tuple[Token, VerifiedToken]:
        if not result.code or result.access_token:
            raise CallbackInvalid("expected an authorization code from the bank")
        token = await self._exchange_code(result.code, pending)
        identity = await self._verifier.verify_access_token(
            token.access_token, client_ids=self.client_ids
        )
        if pending.nonce is not None:
            if token.id_token is None:
                raise CallbackInvalid("the bank's answer to an openid sign-in has no ID token")
            await self._verifier.verify_id_token(
                token.id_token,
                access=identity,
                access_token=token.access_token,
                nonce=pending.nonce,
            )
        return token, identity

    async def _exchange_code(self, code: str, pending: PendingLogin) -> Token:
        metadata = await self._discovery.metadata()
        request = authorization_code_request(
            token_url=metadata.token_endpoint,
            credentials=self._credentials,
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TokenEndpointUnavailable("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable("token endpoint unreachable") from exc
        try:
            return parse_token_response(
                status_code=response.status_code,
                headers=response.headers,
                body=response.content,
                now=self._clock(),
                default_lifetime=self.options.default_token_lifetime,
            )
        except CredentialsRejected as exc:
            if exc.error == "invalid_grant":
                raise CallbackInvalid("the bank did not accept the authorization code") from exc
            raise
