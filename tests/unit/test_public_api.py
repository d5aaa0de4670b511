"""The public surface is deliberate: pinned here, typed, and documented."""

from __future__ import annotations

from pathlib import Path

import fastapi_corpauth

EXPECTED = {
    "AuthorizationDenied",
    "BankApiUnavailable",
    "CallbackInvalid",
    "CookieOptions",
    "CurrentUserDependency",
    "IssuerMismatch",
    "LifespanNotStarted",
    "LoginError",
    "MemorySessionStore",
    "NotAuthenticated",
    "OptionalUserDependency",
    "SessionStore",
    "SignedInUser",
    "StateError",
    "StoreUnavailable",
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
    "EndpointNotFound",
    "InvalidToken",
    "ProviderMetadata",
    "ResponseModeMismatch",
    "SignInOptions",
    "VerificationError",
    "VerificationPolicy",
    "VerificationUnavailable",
    "VerifiedBearerDependency",
    "VerifiedToken",
    "UserApiClientDependency",
    "SessionExpired",
    "__version__",
    "corpauth_exception_handler",
}


def test_all_is_pinned() -> None:
    assert set(fastapi_corpauth.__all__) == EXPECTED


def test_all_matches_public_names() -> None:
    public = {
        name
        for name, value in vars(fastapi_corpauth).items()
        if not name.startswith("_") and not isinstance(value, type(fastapi_corpauth))
    }
    assert public | {"__version__"} == set(fastapi_corpauth.__all__)


def test_exports_claim_the_package_module() -> None:
    for name in fastapi_corpauth.__all__:
        obj = getattr(fastapi_corpauth, name)
        if isinstance(obj, type):
            assert obj.__module__ == "fastapi_corpauth", name


def test_ships_py_typed() -> None:
    assert (Path(fastapi_corpauth.__file__).parent / "py.typed").is_file()


def test_errors_share_one_root() -> None:
    for name in fastapi_corpauth.__all__:
        obj = getattr(fastapi_corpauth, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fastapi_corpauth.CorpAuthError)
