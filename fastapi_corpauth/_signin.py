"""Browser sign-in as a service: start, complete, keep alive and end, without a framework.

``SignIn`` holds the rules that decide whether a callback becomes a session and how a
session lasts the working day; the router (``_router``) and the dependencies only turn
requests into calls here and results into responses.

A callback creates a session only once:

1. its ``state`` was issued here, is young, is one this browser started (the pending
   sign-in travels sealed in the browser's sign-in cookie) and unused (login CSRF);
2. its ``iss`` names the configured issuer, and is present when the server promised it
   (RFC 9207 mix-up defence);
3. it carries no error, and its token or code arrived in the response mode asked for;
4. the token is one the bank vouches for as an access token of this client, checked
   with the issuer's keys or its introspection endpoint (``TokenVerifier``); in the code
   flow the token comes from the back channel and is verified all the same, and an ID
   token must carry this sign-in's ``nonce``.

A session then lasts until ``session_max_age`` or the bank ends it: in the code flow its
access token is refreshed server-side (``grant_type=refresh_token``) shortly before it
expires, once per session however many tabs and worker processes ask (single flight and
a lease in the store); in the implicit flow a page view near the token's end goes
through the bank again with ``prompt=none`` and comes back without a password form.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import CachePolicy, ClientCredentials, SignInOptions
from ._discovery import Discovery
from ._errors import (
    AuthorizationDenied,
    CallbackInvalid,
    CorpAuthError,
    CredentialsRejected,
    InvalidToken,
    MalformedTokenResponse,
    SessionExpired,
    StateError,
    TokenEndpointUnavailable,
    VerificationUnavailable,
)
from ._login_protocol import (
    AuthorizationResult,
    ResponseMode,
    ResponseType,
    authorize_url,
    check_issuer,
    check_response_mode,
    end_session_url,
    expected_response_mode,
    fingerprint,
    new_nonce,
    parse_callback,
    pkce_pair,
    raise_for_error,
    safe_redirect_target,
)
from ._protocol import (
    authorization_code_request,
    parse_token_response,
    refresh_token_request,
    stale_at,
    token_from_fields,
)
from ._sessions import SessionManager, SignedInUser, StoredSession, usable_until
from ._states import mint_state, read_state
from ._store import StoreUnavailable
from ._token import Token
from ._verification import VerifiedToken
from ._verifier import TokenVerifier

__all__ = ["CompletedSignIn", "PendingLogin", "RenewSilently", "SignIn", "SilentSignInFailed"]

logger = logging.getLogger("fastapi_corpauth.login")

#: Errors a ``prompt=none`` sign-in answers when the bank needs the customer's input.
SILENT_ERRORS = frozenset(
    {"login_required", "interaction_required", "consent_required", "account_selection_required"}
)
#: Seconds after a silent renewal during which no other is tried (no loops).
SILENT_RENEWAL_PAUSE = 10.0


@dataclass(frozen=True, kw_only=True)
class PendingLogin:
    """What ``/login`` remembered for the callback; it travels sealed in the browser."""

    state_fingerprint: str
    next_url: str
    redirect_uri: str
    response_type: ResponseType
    response_mode: ResponseMode
    locale: str
    code_verifier: str | None = None
    nonce: str | None = None
    silent: bool = False

    def __repr__(self) -> str:
        return f"PendingLogin(next_url={self.next_url!r}, response_type={self.response_type!r})"

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PendingLogin | None:
        try:
            mode = record["response_mode"]
            return cls(
                state_fingerprint=str(record["state_fingerprint"]),
                next_url=str(record["next_url"]),
                redirect_uri=str(record["redirect_uri"]),
                response_type="code" if record["response_type"] == "code" else "token",
                response_mode=mode if mode in ("query", "form_post") else "fragment",
                locale=str(record.get("locale") or "en"),
                code_verifier=_optional_str(record.get("code_verifier")),
                nonce=_optional_str(record.get("nonce")),
                silent=record.get("silent") is True,
            )
        except (KeyError, TypeError):
            return None


@dataclass(frozen=True)
class StartedSignIn:
    """Where to send the browser, and what it must carry back."""

    url: str
    pending: PendingLogin


@dataclass(frozen=True)
class CompletedSignIn:
    """A new session, and where the browser goes next."""

    session_id: str
    next_url: str

    def __repr__(self) -> str:
        return f"CompletedSignIn(next_url={self.next_url!r})"


@dataclass(frozen=True)
class RenewSilently:
    """The implicit session's token is near its end: renew it through the bank with
    ``prompt=none`` (the customer's page view goes there and back)."""

    user: SignedInUser


class SilentSignInFailed(AuthorizationDenied):
    """A ``prompt=none`` renewal needs the customer: sign in the ordinary way, then go to
    ``next_url`` (in ``locale``)."""

    def __init__(self, message: str, *, error: str | None, next_url: str, locale: str) -> None:
        super().__init__(message, error=error)
        self.next_url = next_url
        self.locale = locale


class SignIn:
    """Starts, completes, keeps alive and ends browser sign-ins for one client.

    ``state_keys`` sign the ``state`` values (newest last); ``cache`` decides when a
    session's token counts as near its end (``stale_at``); ``lease`` bounds how long one
    process may hold a session's renewal.
    """

    def __init__(
        self,
        *,
        options: SignInOptions,
        credentials: ClientCredentials,
        sessions: SessionManager,
        discovery: Discovery,
        verifier: TokenVerifier,
        http: httpx.AsyncClient,
        state_keys: Sequence[bytes],
        state_max_age: float,
        cache: CachePolicy = CachePolicy(),  # noqa: B008 - immutable value object
        lease: float = 15.0,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.05,
    ) -> None:
        self.options = options
        self._credentials = credentials
        self._sessions = sessions
        self._discovery = discovery
        self._verifier = verifier
        self._http = http
        self._state_keys = list(state_keys)
        self._state_max_age = state_max_age
        self._cache = cache
        self._lease = lease
        self._clock = clock
        self._poll_interval = poll_interval
        self._renewals: dict[str, asyncio.Task[StoredSession]] = {}
        #: Refresh requests sent, for metrics and tests.
        self.refreshes_sent = 0

    def __repr__(self) -> str:
        return (
            f"SignIn(client_id={self._credentials.client_id!r}, "
            f"response_type={self.options.response_type!r})"
        )

    @property
    def client_ids(self) -> frozenset[str]:
        """The only client whose tokens may sign a customer in here: this one."""
        return frozenset({self._credentials.client_id})

    # --- starting ------------------------------------------------------------------------

    async def start(
        self, *, next_url: str, locale: str, redirect_uri: str, silent: bool = False
    ) -> StartedSignIn:
        """A new sign-in: the authorization URL to visit and what the browser keeps.

        ``silent`` asks the bank to answer without showing a page (``prompt=none``): the
        customer's SSO session renews the sign-in, or the bank says ``login_required``.
        """
        options = self.options
        code_flow = options.response_type == "code"
        verifier, challenge = pkce_pair() if code_flow else (None, None)
        # Old Keycloak wants a nonce for any request with openid; the code flow checks it.
        nonce = new_nonce() if "openid" in options.scope.split() else None
        state = mint_state(self._state_keys[-1], now=self._clock())
        pending = PendingLogin(
            state_fingerprint=fingerprint(state),
            next_url=next_url,
            redirect_uri=redirect_uri,
            response_type=options.response_type,
            response_mode=expected_response_mode(options.response_type, options.response_mode),
            locale=locale,
            code_verifier=verifier,
            nonce=nonce,
            silent=silent,
        )
        metadata = await self._discovery.metadata()
        url = authorize_url(
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
            prompt="none" if silent else None,
        )
        return StartedSignIn(url=url, pending=pending)

    # --- completing ----------------------------------------------------------------------

    async def complete(
        self,
        *,
        params: Mapping[str, str],
        arrived_in: ResponseMode,
        pending: Sequence[PendingLogin],
        session_id: str | None,
    ) -> CompletedSignIn:
        """Turn the authorization response into a session, or refuse it.

        ``pending`` are the sign-ins this browser started (from its sign-in cookie);
        ``session_id`` is the browser's current session, replaced on success.

        Raises:
            LoginError: ``StateError``, ``IssuerMismatch``, ``AuthorizationDenied``
                (``SilentSignInFailed`` for a silent renewal that needs the customer),
                ``ResponseModeMismatch`` or ``CallbackInvalid``.
            VerificationError: ``InvalidToken`` (the bank does not vouch for the token)
                or ``VerificationUnavailable`` (its keys or introspection are unreachable).
            TokenError: the code exchange failed.
            StoreUnavailable: the session store is down.
        """
        result = parse_callback(params)
        login = await self._claim(result.state, pending)
        metadata = await self._discovery.metadata()
        check_issuer(result, metadata.issuer, required=metadata.iss_parameter_supported)
        try:
            raise_for_error(result)
        except AuthorizationDenied as exc:
            if login.silent and exc.error in SILENT_ERRORS:
                raise SilentSignInFailed(
                    "the bank needs the customer to sign in",
                    error=exc.error,
                    next_url=login.next_url,
                    locale=login.locale,
                ) from exc
            raise
        check_response_mode(result, arrived_in=arrived_in, expected=login.response_mode)
        if login.response_type == "code":
            token, identity = await self._from_code(result, login)
        else:
            token, identity = await self._from_implicit(result)
        token = _within(token, identity)
        if token.is_expired(self._clock()):
            raise CallbackInvalid("the bank's answer carries an expired token")
        new_id = await self._sessions.create_session(
            token=token,
            identity=identity,
            flow=login.response_type,
            replaces=session_id,
            silent=login.silent,
        )
        # Checked again, though it was checked at /login and travelled sealed.
        next_url = safe_redirect_target(login.next_url, default=self.options.post_login_url)
        return CompletedSignIn(session_id=new_id, next_url=next_url)

    async def _claim(self, state: str | None, pending: Sequence[PendingLogin]) -> PendingLogin:
        """The pending sign-in ``state`` belongs to, used up now.

        Raises:
            StateError: ``missing``, ``unknown`` (not issued here), ``expired``,
                ``mismatch`` (issued here, to another browser) or ``reused``.
            StoreUnavailable: single use cannot be guaranteed.
        """
        if not state:
            raise StateError("the callback carries no state", problem="missing")
        verdict = read_state(
            state, self._state_keys, now=self._clock(), max_age=self._state_max_age
        )
        if verdict == "unknown":
            raise StateError("this sign-in was not started here", problem="unknown")
        wanted = fingerprint(state)
        login = next((p for p in pending if p.state_fingerprint == wanted), None)
        if verdict == "expired":
            raise StateError("this sign-in took too long and expired", problem="expired")
        if login is None:
            if await self._sessions.state_used(state):
                raise StateError("this sign-in was already completed", problem="reused")
            raise StateError("this sign-in was started in another browser", problem="mismatch")
        if not await self._sessions.claim_state(state, remember_for=self._state_max_age):
            raise StateError("this sign-in was already completed", problem="reused")
        return login

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
        metadata = await self._discovery.metadata()
        request = authorization_code_request(
            token_url=metadata.token_endpoint,
            credentials=self._credentials,
            code=result.code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        try:
            token = await self._token_request(request)
        except CredentialsRejected as exc:
            if exc.error == "invalid_grant":
                raise CallbackInvalid("the bank did not accept the authorization code") from exc
            raise
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

    async def _token_request(self, request: httpx.Request) -> Token:
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TokenEndpointUnavailable("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable("token endpoint unreachable") from exc
        return parse_token_response(
            status_code=response.status_code,
            headers=response.headers,
            body=response.content,
            now=self._clock(),
            default_lifetime=self.options.default_token_lifetime,
        )

    # --- keeping the session alive ---------------------------------------------------------

    async def resume(
        self, session_id: str | None, *, page_view: bool
    ) -> SignedInUser | RenewSilently | None:
        """The signed-in customer of ``session_id``, with a token valid now.

        None when there is no session. A code-flow token near its end is refreshed here
        (see ``renew``). An implicit one near its end asks for a silent renewal on a page
        view (``RenewSilently``) and is served as it is otherwise, until it expires.

        Raises:
            SessionExpired: the session existed but its token expired and cannot be
                renewed here, or the bank refused to refresh it.
            TokenEndpointUnavailable, VerificationUnavailable: the refresh failed for now
                and the token has expired meanwhile (the session is kept).
        """
        stored = await self._sessions.load(session_id)
        if stored is None:
            return None
        now = self._clock()
        if now >= usable_until(stored):
            await self._sessions.end_session(stored.session_id)
            raise SessionExpired("the session reached its end")
        token = stored.token
        if now < stale_at(token, self._cache):
            return stored.user
        if stored.flow == "code" and stored.refresh_token:
            try:
                return (await self.renew(stored)).user
            except (TokenEndpointUnavailable, VerificationUnavailable, StoreUnavailable):
                if token.is_expired(now):
                    raise
                return stored.user  # a transient failure: the token still serves
        if stored.flow == "token" and page_view and self._may_renew_silently(stored, now):
            return RenewSilently(stored.user)
        if token.is_expired(now):
            raise SessionExpired("the session's token expired")
        return stored.user

    def _may_renew_silently(self, stored: StoredSession, now: float) -> bool:
        last = stored.silently_renewed_at
        return last is None or now - last >= SILENT_RENEWAL_PAUSE

    async def renew(self, stored: StoredSession) -> StoredSession:
        """Refresh a code-flow session's tokens, once per session at a time.

        Concurrent callers of this process share one refresh; other processes wait for
        the lease holder and take its result from the store.

        Raises:
            SessionExpired: the bank refused the refresh token (``invalid_grant``: the
                SSO session ended, a not-before push, a reused rotated token), or its
                new token is not a valid token of this customer; the session is ended.
            TokenEndpointUnavailable, VerificationUnavailable, StoreUnavailable: try
                again later; the session is kept.
        """
        key = fingerprint(stored.session_id)
        task = self._renewals.get(key)
        if task is None:
            task = asyncio.create_task(self._renew(stored))
            self._renewals[key] = task
            task.add_done_callback(lambda _: self._renewals.pop(key, None))
        return await asyncio.shield(task)

    async def _renew(self, stored: StoredSession) -> StoredSession:
        session_id = stored.session_id
        deadline = time.monotonic() + 2 * self._lease
        while True:
            try:
                leased = await self._sessions.acquire_renewal(session_id, lease=self._lease)
            except StoreUnavailable:
                leased = True  # without a shared store there is only this process
            if leased:
                break
            latest = await self._sessions.load(session_id)
            if latest is None:
                raise SessionExpired("the session ended while it was being renewed")
            if latest.token.issued_at > stored.token.issued_at:
                return latest  # the lease holder renewed it
            if time.monotonic() >= deadline:
                logger.warning("a session's renewal lease was not released in time")
                break
            await asyncio.sleep(self._poll_interval)
        try:
            latest = await self._sessions.load(session_id) or stored
            if latest.token.issued_at > stored.token.issued_at and self._clock() < stale_at(
                latest.token, self._cache
            ):
                return latest
            return await self._refresh(latest)
        finally:
            await self._sessions.release_renewal(session_id)

    async def _refresh(self, stored: StoredSession) -> StoredSession:
        assert stored.refresh_token is not None
        metadata = await self._discovery.metadata()
        request = refresh_token_request(
            token_url=metadata.token_endpoint,
            credentials=self._credentials,
            refresh_token=stored.refresh_token,
        )
        self.refreshes_sent += 1
        try:
            token = await self._token_request(request)
            identity = await self._verifier.verify_access_token(
                token.access_token, client_ids=self.client_ids
            )
            if identity.subject != stored.user.subject:
                raise InvalidToken("the refreshed token names another customer", reason="subject")
        except (CredentialsRejected, MalformedTokenResponse, InvalidToken) as exc:
            await self._sessions.end_session(stored.session_id)
            logger.info("session ended: the bank refused to refresh it (%s)", _why(exc))
            raise SessionExpired("the bank ended the session") from exc
        logger.debug("session refreshed")
        return await self._sessions.renewed(stored, _within(token, identity))

    # --- ending ------------------------------------------------------------------------------

    async def end(self, session_id: str | None) -> StoredSession | None:
        """End the session here; return what it was (for the bank's end-session)."""
        stored = await self._sessions.load(session_id)
        await self._sessions.end_session(session_id)
        return stored

    async def end_session_url(
        self, *, return_to: str, locale: str, ended: StoredSession | None = None
    ) -> str | None:
        """Where to end the bank's SSO session too, or None when the bank has no
        end-session endpoint (then only the local session ends). With the ended
        session's ID token as ``id_token_hint``, Keycloak signs out without asking."""
        metadata = await self._discovery.metadata()
        if metadata.end_session_endpoint is None:
            return None
        return end_session_url(
            endpoint=metadata.end_session_endpoint,
            client_id=self._credentials.client_id,
            post_logout_redirect_uri=return_to,
            locale=locale,
            id_token_hint=ended.id_token if ended is not None else None,
        )


def _within(token: Token, identity: VerifiedToken) -> Token:
    """The token, expiring no later than the bank says it does."""
    if identity.expires_at is not None and identity.expires_at < token.expires_at:
        return dataclasses.replace(token, expires_at=identity.expires_at)
    return token


def _why(exc: CorpAuthError) -> str:
    if isinstance(exc, CredentialsRejected):
        return exc.error or exc.code
    if isinstance(exc, InvalidToken):
        return exc.reason
    return exc.code


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
