"""fastapi-corpauth: sign corporate customers in through a bank's Keycloak and call its API."""

from ._config import (
    CachePolicy,
    ClientCredentials,
    Endpoints,
    RetryPolicy,
    Timeouts,
)
from ._corpauth import ApiClientDependency, BearerTokenDependency, CorpAuth
from ._errors import (
    ConfigurationError,
    CorpAuthError,
    CredentialsRejected,
    MalformedTokenResponse,
    TokenEndpointUnavailable,
    TokenError,
)
from ._fastapi import corpauth_exception_handler
from ._settings import CorpAuthSettings
from ._token import Token
from ._token_service import TokenService

__version__ = "0.1.0"

__all__ = [
    "ApiClientDependency",
    "BearerTokenDependency",
    "CachePolicy",
    "ClientCredentials",
    "ConfigurationError",
    "CorpAuth",
    "CorpAuthError",
    "CorpAuthSettings",
    "CredentialsRejected",
    "Endpoints",
    "MalformedTokenResponse",
    "RetryPolicy",
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
