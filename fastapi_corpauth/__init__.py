"""fastapi-corpauth: sign corporate customers in through a bank's Keycloak and call its API."""

from ._config import (
    CachePolicy,
    ClientCredentials,
    CookieOptions,
    Endpoints,
    RetryPolicy,
    SignInOptions,
    Timeouts,
    VerificationPolicy,
)
from ._corpauth import (
    ApiClientDependency,
    BearerTokenDependency,
    CorpAuth,
    CurrentUserDependency,
    OptionalUserDependency,
    UserApiClientDependency,
    VerifiedBearerDependency,
)
from ._errors import (
    AuthorizationDenied,
    BankApiUnavailable,
    CallbackInvalid,
    ConfigurationError,
    CorpAuthError,
    CredentialsRejected,
    EndpointNotFound,
    InvalidToken,
    IssuerMismatch,
    LifespanNotStarted,
    LoginError,
    MalformedTokenResponse,
    NotAuthenticated,
    ResponseModeMismatch,
    SessionExpired,
    StateError,
    TokenEndpointUnavailable,
    TokenError,
    VerificationError,
    VerificationUnavailable,
)
from ._fastapi import corpauth_exception_handler
from ._memory_store import MemorySessionStore
from ._metadata import ProviderMetadata
from ._sessions import SignedInUser
from ._settings import CorpAuthSettings
from ._store import SessionStore, StoreUnavailable
from ._token import Token
from ._token_service import TokenService
from ._verification import VerifiedToken

__version__ = "0.1.0"

__all__ = [
    "ApiClientDependency",
    "AuthorizationDenied",
    "BankApiUnavailable",
    "BearerTokenDependency",
    "CachePolicy",
    "CallbackInvalid",
    "ClientCredentials",
    "ConfigurationError",
    "CookieOptions",
    "CorpAuth",
    "CorpAuthError",
    "CorpAuthSettings",
    "CredentialsRejected",
    "CurrentUserDependency",
    "EndpointNotFound",
    "Endpoints",
    "InvalidToken",
    "IssuerMismatch",
    "LifespanNotStarted",
    "LoginError",
    "MalformedTokenResponse",
    "MemorySessionStore",
    "NotAuthenticated",
    "OptionalUserDependency",
    "ProviderMetadata",
    "ResponseModeMismatch",
    "RetryPolicy",
    "SessionExpired",
    "SessionStore",
    "SignInOptions",
    "SignedInUser",
    "StateError",
    "StoreUnavailable",
    "Timeouts",
    "Token",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenService",
    "UserApiClientDependency",
    "VerificationError",
    "VerificationPolicy",
    "VerificationUnavailable",
    "VerifiedBearerDependency",
    "VerifiedToken",
    "__version__",
    "corpauth_exception_handler",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and _obj.__module__.startswith("fastapi_corpauth._"):
        _obj.__module__ = "fastapi_corpauth"
del _name, _obj
