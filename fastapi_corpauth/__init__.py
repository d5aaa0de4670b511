"""fastapi-corpauth: sign corporate customers in through a bank's Keycloak and call its API."""

from ._config import (
    CachePolicy,
    ClientCredentials,
    CookieOptions,
    Endpoints,
    RetryPolicy,
    Timeouts,
)
from ._corpauth import (
    ApiClientDependency,
    BearerTokenDependency,
    CorpAuth,
    CurrentUserDependency,
    OptionalUserDependency,
)
from ._errors import (
    AuthorizationDenied,
    BankApiUnavailable,
    CallbackInvalid,
    ConfigurationError,
    CorpAuthError,
    CredentialsRejected,
    IssuerMismatch,
    LifespanNotStarted,
    LoginError,
    MalformedTokenResponse,
    NotAuthenticated,
    StateError,
    TokenEndpointUnavailable,
    TokenError,
)
from ._fastapi import corpauth_exception_handler
from ._memory_store import MemorySessionStore
from ._sessions import SignedInUser
from ._settings import CorpAuthSettings
from ._store import SessionStore, StoreUnavailable
from ._token import Token
from ._token_service import TokenService

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
    "Endpoints",
    "IssuerMismatch",
    "LifespanNotStarted",
    "LoginError",
    "MalformedTokenResponse",
    "MemorySessionStore",
    "NotAuthenticated",
    "OptionalUserDependency",
    "RetryPolicy",
    "SessionStore",
    "SignedInUser",
    "StateError",
    "StoreUnavailable",
    "Timeouts",
    "Token",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenService",
    "__version__",
    "corpauth_exception_handler",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and _obj.__module__.startswith("fastapi_corpauth._"):
        _obj.__module__ = "fastapi_corpauth"
del _name, _obj
