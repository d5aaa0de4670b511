"""Exceptions raised by fastapi_corpauth.

Every failure the package reports derives from one root, so callers can catch
``CorpAuthError`` for "anything went wrong with bank authentication" and narrow
down when they need to::

    CorpAuthError
    ├── ConfigurationError          a setting is missing or invalid
    │   └── LifespanNotStarted          the app was created without corpauth.lifespan
    ├── TokenError                  a token could not be had from the token endpoint
    │   ├── TokenEndpointUnavailable    network error, timeout, 5xx or 429
    │   ├── CredentialsRejected         the bank refused client_id/client_secret (or a code)
    │   ├── MalformedTokenResponse      the bank answered something that is not a token
    │   └── EndpointNotFound            the configured endpoint does not exist (404/405)
    ├── VerificationError           a token could not be verified
    │   ├── InvalidToken                the bank does not vouch for it, for this client
    │   └── VerificationUnavailable     the bank's keys or introspection are unreachable
    ├── LoginError                  a browser sign-in could not be completed
    │   ├── StateError                  state missing, unknown, reused, expired or foreign
    │   ├── IssuerMismatch              the callback's iss is missing or names another server
    │   ├── ResponseModeMismatch        the answer arrived in another response mode
    │   ├── AuthorizationDenied         the server sent an error (e.g. access_denied)
    │   └── CallbackInvalid             the callback's parameters are unusable
    ├── NotAuthenticated            no signed-in session for this request
    │   └── SessionExpired              the session ended (token expired, refresh refused)
    └── BankApiUnavailable          the bank API could not be reached or timed out

Messages never contain a secret or a token: they are safe to log and to show.
Each error carries a stable ``code`` that the FastAPI edge returns to clients.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AuthorizationDenied",
    "BankApiUnavailable",
    "CallbackInvalid",
    "ConfigurationError",
    "CorpAuthError",
    "CredentialsRejected",
    "EndpointNotFound",
    "InvalidToken",
    "IssuerMismatch",
    "LifespanNotStarted",
    "LoginError",
    "MalformedTokenResponse",
    "NotAuthenticated",
    "ResponseModeMismatch",
    "SessionExpired",
    "StateError",
    "TokenEndpointUnavailable",
    "TokenError",
    "VerificationError",
    "VerificationUnavailable",
]


class CorpAuthError(Exception):
    """Root of every exception raised by fastapi_corpauth."""

    code: str = "corpauth_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(CorpAuthError, ValueError):
    """A setting is missing or invalid.

    ``variables`` names the environment variables at fault, e.g. ``CORPAUTH_CLIENT_ID``.
    """

    code = "configuration_error"

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


class LifespanNotStarted(ConfigurationError):
    """A request needed the running plugin, but its lifespan was never entered.

    The usual cause is ``FastAPI()`` without ``lifespan=corpauth.lifespan``. The code
    stays ``configuration_error``, so clients see the same stable code as before.
    """


class TokenError(CorpAuthError):
    """The client_credentials token could not be obtained."""

    code = "token_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        #: HTTP status the token endpoint answered with, None when there was no answer.
        self.status_code = status_code


class TokenEndpointUnavailable(TokenError):
    """The token endpoint could not be reached or answered with a transient failure.

    ``retry_after`` is how many seconds to wait before the next attempt is worth making:
    the server's ``Retry-After`` when it sent one, otherwise the client's own back-off.
    """

    code = "token_endpoint_unavailable"

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class CredentialsRejected(TokenError):
    """The token endpoint refused the client's credentials (never retried).

    Keycloak answers a wrong secret with 401 ``unauthorized_client`` and an unknown
    client with ``invalid_client`` (400 or 401, depending on its version).
    ``error`` and ``error_description`` are the OAuth error fields, when present.
    """

    code = "client_credentials_rejected"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.error = error
        self.error_description = error_description


class MalformedTokenResponse(TokenError):
    """The token endpoint answered, but not with a usable token (HTML, truncated JSON...)."""

    code = "token_response_malformed"


class EndpointNotFound(TokenError):
    """The token endpoint answered 404 or 405: the URL is wrong, not the credentials.

    Usually ``CORPAUTH_ISSUER`` (or ``CORPAUTH_TOKEN_URL``) names another path than the
    bank's realm; ``url`` is the endpoint that was called.
    """

    code = "token_endpoint_not_found"

    def __init__(self, message: str, *, status_code: int | None = None, url: str = "") -> None:
        super().__init__(message, status_code=status_code)
        self.url = url


class VerificationError(CorpAuthError):
    """A token could not be verified; nothing was trusted."""

    code = "token_verification_failed"


#: Why a token was refused; each is a stable, documented value.
InvalidTokenReason = Literal[
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "issuer",
    "client",
    "token_type",
    "expired",
    "not_yet_valid",
    "service_account",
    "subject",
    "inactive",
    "nonce",
    "id_token",
]


class InvalidToken(VerificationError):
    """The authorization server does not vouch for this token as an access token of
    this client.

    ``reason`` names the check that failed (``signature``, ``issuer``, ``client``,
    ``token_type``, ``expired``, ``service_account``, ``inactive``...). It is safe to log;
    the token itself is never part of the message.
    """

    code = "invalid_token"

    def __init__(self, message: str, *, reason: InvalidTokenReason) -> None:
        super().__init__(message)
        self.reason: InvalidTokenReason = reason


class VerificationUnavailable(VerificationError):
    """The bank's signing keys or its introspection endpoint could not be reached.

    Nothing is trusted meanwhile: new sign-ins wait (503), existing sessions go on.
    """

    code = "verification_unavailable"


class LoginError(CorpAuthError):
    """A browser sign-in could not be completed; no session was created."""

    code = "login_failed"


StateProblem = Literal["missing", "unknown", "reused", "expired", "mismatch"]


class StateError(LoginError):
    """The callback's ``state`` cannot be trusted (RFC 6749 §10.12 login CSRF defence).

    ``problem`` says which: ``missing`` (no state sent), ``unknown`` (never issued here),
    ``reused`` (already completed), ``expired`` (older than the state lifetime) or
    ``mismatch`` (issued to another browser). ``code`` is ``state_<problem>``.
    """

    def __init__(self, message: str, *, problem: StateProblem) -> None:
        super().__init__(message)
        self.problem = problem
        self.code = f"state_{problem}"


class IssuerMismatch(LoginError):
    """The callback's ``iss`` names another server or realm, or is missing although the
    server announces that it sends one (RFC 9207 mix-up defence).

    ``missing`` tells the two apart.
    """

    code = "issuer_mismatch"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class ResponseModeMismatch(LoginError):
    """The authorization response arrived in another response mode than was asked for,
    e.g. a token in the query string (which ends up in access logs) when the sign-in
    asked for the fragment."""

    code = "response_mode_mismatch"


class AuthorizationDenied(LoginError):
    """The authorization server answered the sign-in with an error, e.g. ``access_denied``.

    ``error`` and ``error_description`` are the server's, sanitised to printable ASCII.
    """

    code = "authorization_denied"

    def __init__(
        self, message: str, *, error: str | None, error_description: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description


class CallbackInvalid(LoginError):
    """The callback's parameters are missing, malformed or not a Bearer token."""

    code = "callback_invalid"


class NotAuthenticated(CorpAuthError):
    """The request has no signed-in session (none, expired, or its token expired)."""

    code = "not_authenticated"


class SessionExpired(NotAuthenticated):
    """The browser's session ended: its token expired and could not be renewed, the bank
    refused to refresh it (the SSO session ended, a not-before push), or the bank's API
    refused it. A front end should navigate to sign in again."""

    code = "session_expired"


class BankApiUnavailable(CorpAuthError):
    """The bank API could not be reached or did not answer in time."""

    code = "bank_api_unavailable"
