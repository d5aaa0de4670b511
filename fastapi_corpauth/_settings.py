"""Reading configuration from the environment: the one place that does.

``CorpAuthSettings`` is a pydantic-settings model. Every field can be passed in code or
set as ``CORPAUTH_<FIELD>`` in the environment or a ``.env`` file. It converts itself
into the small value objects of ``_config`` that the rest of the package takes.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._config import (
    ASYMMETRIC_ALGORITHMS,
    CachePolicy,
    ClientAuthMethod,
    ClientCredentials,
    CookieOptions,
    Endpoints,
    RetryPolicy,
    SignInOptions,
    Timeouts,
    VerificationMode,
    VerificationPolicy,
)
from ._errors import ConfigurationError
from ._net import is_loopback

__all__ = ["CorpAuthSettings"]

ENV_PREFIX = "CORPAUTH_"

logger = logging.getLogger("fastapi_corpauth.settings")


def cookie_name(name: str, secure: bool | None, path: str, domain: str | None) -> str:
    """``name`` with the prefix browsers enforce for Secure cookies.

    ``__Host-`` (Secure, ``Path=/``, no ``Domain``: the cookie cannot be set or replaced
    by another host or path) when it applies, else ``__Secure-`` for a Secure cookie.
    """
    if secure is not True:
        return name
    if path == "/" and domain is None:
        return "__Host-" + name
    return "__Secure-" + name


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    if parts.fragment:
        raise ValueError("must not contain a fragment")
    return value


class CorpAuthSettings(BaseSettings):
    """Settings for ``CorpAuth``; each field is also read from ``CORPAUTH_<FIELD>``.

    Raises:
        ConfigurationError: a required setting is missing or a value is invalid; the
            message names the environment variables at fault and never their values.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    client_id: str = Field(min_length=1, description="OAuth client id registered at the bank.")
    client_secret: SecretStr = Field(description="OAuth client secret; never logged.")
    issuer: str = Field(
        description="Keycloak realm URL, e.g. https://account.bog.ge/auth/realms/bog.",
    )
    authorize_url: str | None = Field(
        default=None, description="Overrides discovery's authorization_endpoint."
    )
    token_url: str | None = Field(default=None, description="Overrides discovery's token_endpoint.")
    logout_url: str | None = Field(
        default=None, description="Overrides discovery's end_session_endpoint."
    )
    jwks_url: str | None = Field(default=None, description="Overrides discovery's jwks_uri.")
    introspection_url: str | None = Field(
        default=None, description="Overrides discovery's introspection_endpoint."
    )
    discovery: bool = Field(
        default=True,
        description="Read {issuer}/.well-known/openid-configuration; off: Keycloak's paths.",
    )
    scope: str = Field(default="corp", description="Scope requested; empty sends none.")
    api_base_url: str = Field(
        default="https://api.businessonline.ge/api", description="Base URL of the bank API."
    )
    client_auth_method: ClientAuthMethod = Field(
        default="client_secret_basic",
        description="How the client authenticates at the token endpoint: HTTP Basic, or "
        "client_secret_post for Keycloak 18 and older with special characters in the secret.",
    )

    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to connect to the bank (token endpoint and API)."
    )
    read_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for each answer from the bank."
    )

    token_leeway: float = Field(
        default=30.0,
        ge=0,
        description="Seconds before expiry a cached token stops being served (at most a "
        "quarter of its lifetime).",
    )
    token_refresh_window: float = Field(
        default=60.0,
        ge=0,
        description="Seconds before the leeway from which the next token is fetched in the "
        "background under traffic.",
    )
    token_default_lifetime: float = Field(
        default=60.0,
        gt=0,
        description="Lifetime assumed when neither expires_in nor a JWT exp is given.",
    )
    token_retry_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts at the token endpoint on network errors, 5xx and 429, "
        "counting the first.",
    )
    token_backoff_base: float = Field(
        default=0.2, ge=0, description="First retry delay in seconds; doubles, with jitter."
    )
    token_backoff_max: float = Field(
        default=5.0, ge=0, description="Longest retry delay in seconds."
    )
    token_cooldown: float = Field(
        default=5.0,
        ge=0,
        description="Seconds callers fail fast after a failed fetch (or the server's Retry-After).",
    )
    token_retry_after_max: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Longest Retry-After honoured (seconds); then one request probes again.",
    )

    # Verifying customers' tokens (sign-in callback and verified_bearer)
    token_verification: VerificationMode = Field(
        default="auto",
        description="auto: JWS against the issuer's keys, introspection otherwise; or jwt, "
        "introspection. Verification cannot be turned off.",
    )
    token_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        default=ASYMMETRIC_ALGORITHMS,
        description="Signature algorithms accepted, comma-separated (asymmetric only).",
    )
    token_verification_leeway: float = Field(
        default=10.0, ge=0, le=300, description="Clock skew tolerated on exp and nbf (seconds)."
    )
    jwks_refetch_interval: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Least seconds between key reads caused by unknown key ids.",
    )
    bearer_client_ids: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Clients whose customer tokens verified_bearer accepts besides "
        "client_id (e.g. the bank-registered desktop app), comma-separated.",
    )

    # Browser sign-in (the login router and current_user)
    redirect_uri: str | None = Field(
        default=None, description="Absolute callback URL; derived from the request if unset."
    )
    response_type: Literal["token", "code"] = Field(
        default="token",
        description="token (the bank's documented implicit flow) or code (with PKCE).",
    )
    response_mode: Literal["fragment", "form_post", "query"] | None = Field(
        default=None, description="How the bank returns the result; unset: Keycloak's default."
    )
    locale: Literal["en", "ka"] = Field(
        default="en", description="Default sign-in language: en or ka (Georgian)."
    )
    session_secret: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Signing keys, comma-separated, oldest first; newest signs."
    )
    session_max_age: int = Field(
        default=8 * 3600,
        gt=0,
        description="Seconds a session may last; its token's expiry ends it sooner.",
    )
    session_cookie: str = Field(
        default="corpauth_session",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Name of the session cookie.",
    )
    cookie_path: str = Field(default="/", pattern=r"^/", description="Path of the session cookie.")
    cookie_domain: str | None = Field(
        default=None, description="Domain of the session cookie; unset: this host only."
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag of the cookies: auto (unset) follows CORPAUTH_REDIRECT_URI "
        "(https: Secure, and the __Host- prefix); false only in development.",
    )
    development: bool = Field(
        default=False,
        description="Local development: the callback URL may come from the request (loopback "
        "hosts only) and plain http is allowed on loopback. Never in production.",
    )
    cookie_samesite: Literal["lax", "strict"] = Field(
        default="lax", description="SameSite of the session cookie: lax or strict."
    )
    state_max_age: int = Field(
        default=600, gt=0, le=3600, description="Seconds a started sign-in stays valid."
    )
    session_store_max_entries: int = Field(
        default=10_000,
        gt=0,
        description="Entries the in-process session store holds (sessions and pending "
        "sign-ins); when full, the entries expiring soonest go first. Unused with Redis.",
    )
    post_login_url: str = Field(
        default="/", pattern=r"^/", description="Where a sign-in without next= lands."
    )
    post_logout_url: str = Field(
        default="/", pattern=r"^/", description="Where a sign-out without next= lands."
    )
    logout_at_provider: bool = Field(
        default=False, description="Also end the bank's (Keycloak's) session on sign-out."
    )
    login_redirect: bool = Field(
        default=False, description="Send browsers asking for HTML to /login instead of a 401."
    )
    silent_renewal: bool = Field(
        default=True,
        description="Implicit flow: renew a session whose token nears its end through the "
        "bank with prompt=none on the next page view.",
    )

    # Several workers: Redis shares the token and the sessions (the ``redis`` extra)
    redis_mode: Literal["standalone", "cluster", "sentinel"] = Field(
        default="standalone",
        description="One Redis server, a Redis Cluster, or a master found through Sentinel.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="redis://, rediss:// or unix:// URL; shares tokens and sessions. Masked.",
    )
    redis_prefix: str = Field(
        default="corpauth",
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Key prefix, so several apps can share one Redis.",
    )
    redis_timeout: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="Seconds a Redis command may take before Redis counts as down.",
    )
    redis_sentinels: Annotated[tuple[tuple[str, int], ...], NoDecode] = Field(
        default=(),
        validate_default=True,
        description="Sentinel mode: host:port of each Sentinel, comma-separated.",
    )
    redis_service: str | None = Field(
        default=None,
        validate_default=True,
        max_length=200,
        pattern=r"^[^\s]+$",
        description="Sentinel mode: the name the Sentinels monitor the master under.",
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="Sentinel mode: the Sentinels' own password, if they require one. Masked.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc
        self._warn_about_a_local_issuer_with_the_bank_api()
        env_file = values.get("_env_file", self.model_config.get("env_file"))
        _warn_about_unknown_variables(
            self.variable_names(),
            environ=os.environ,
            dotenv=_read_env_files(env_file, values.get("_env_file_encoding", "utf-8")),
        )

    def _warn_about_a_local_issuer_with_the_bank_api(self) -> None:
        """A local development server as issuer, but API calls to the real bank: say so.

        Its tokens mean nothing to the bank, so every API call would fail; the usual
        cause is a forgotten ``CORPAUTH_API_BASE_URL``.
        """
        if "api_base_url" in self.model_fields_set:
            return
        if is_loopback(urlsplit(self.issuer).hostname):
            logger.warning(
                "CORPAUTH_ISSUER names a server on this machine but CORPAUTH_API_BASE_URL "
                "is not set, so bank API calls go to %s; set it too (the development "
                "server prints both)",
                self.api_base_url,
            )

    @classmethod
    def variable_names(cls) -> tuple[str, ...]:
        """Every ``CORPAUTH_*`` variable these settings read, in field order."""
        return tuple(ENV_PREFIX + name.upper() for name in cls.model_fields)

    @model_validator(mode="after")
    def _safe_for_production(self) -> CorpAuthSettings:
        uri = urlsplit(self.redirect_uri) if self.redirect_uri else None
        if uri is not None and uri.scheme == "http" and not is_loopback(uri.hostname):
            raise ValueError(
                "CORPAUTH_REDIRECT_URI must be https: plain http is for loopback development"
            )
        if self.development and uri is not None and not is_loopback(uri.hostname):
            raise ValueError(
                "CORPAUTH_DEVELOPMENT is for this machine only, but CORPAUTH_REDIRECT_URI "
                "names another host"
            )
        if self.cookie_secure is False and not self.development:
            raise ValueError("CORPAUTH_COOKIE_SECURE=false is only allowed in development")
        return self

    @field_validator("cookie_secure", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        # "auto" is the documented default; it means "not set".
        if isinstance(value, str) and value.strip().lower() in ("auto", ""):
            return None
        return value

    @field_validator(
        "issuer",
        "authorize_url",
        "token_url",
        "logout_url",
        "jwks_url",
        "introspection_url",
        "api_base_url",
        "redirect_uri",
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("token_algorithms", "bearer_client_ids", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("token_algorithms")
    @classmethod
    def _asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                "must list asymmetric algorithms only: " + ",".join(ASYMMETRIC_ALGORITHMS)
            )
        return value

    @field_validator("session_secret", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        if isinstance(value, SecretStr):
            return (value,)
        return value

    @field_validator("session_secret")
    @classmethod
    def _key_length(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(len(key.get_secret_value()) < 16 for key in value):
            raise ValueError("each key must be at least 16 characters long")
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        if urlsplit(raw.strip()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return SecretStr(raw.strip())

    @field_validator("redis_url")
    @classmethod
    def _redis_url_for_mode(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        mode = info.data.get("redis_mode")
        if mode == "cluster" and value is None:
            raise ValueError("is required when CORPAUTH_REDIS_MODE is cluster (any node)")
        if mode in ("cluster", "sentinel") and value is not None:
            if urlsplit(value.get_secret_value()).scheme == "unix":
                raise ValueError(f"must be a redis:// or rediss:// URL in {mode} mode")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            return tuple(
                _sentinel_address(item) if isinstance(item, str) else item for item in value
            )
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_for_mode(
        cls, value: tuple[tuple[str, int], ...], info: ValidationInfo
    ) -> tuple[tuple[str, int], ...]:
        _only_in_sentinel_mode(bool(value), info)
        if any(not host or not 0 < port < 65536 for host, port in value):
            raise ValueError("each Sentinel must be host:port with a port from 1 to 65535")
        return value

    @field_validator("redis_service", mode="before")
    @classmethod
    def _blank_service(cls, value: Any) -> Any:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("redis_service", "redis_sentinel_password")
    @classmethod
    def _service_for_mode(cls, value: Any, info: ValidationInfo) -> Any:
        _only_in_sentinel_mode(value is not None, info, required=info.field_name == "redis_service")
        return value

    @field_validator("client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    def endpoints(self) -> Endpoints:
        """Keycloak's paths under the issuer, with the explicit overrides: the fallback
        while discovery cannot be read (or when it is off)."""
        return Endpoints.from_issuer(
            self.issuer,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            logout_url=self.logout_url,
            jwks_url=self.jwks_url,
            introspection_url=self.introspection_url,
        )

    def endpoint_overrides(self) -> dict[str, str | None]:
        """Explicitly configured endpoints, by their discovery names; they beat discovery."""
        return {
            "authorization_endpoint": self.authorize_url,
            "token_endpoint": self.token_url,
            "end_session_endpoint": self.logout_url,
            "jwks_uri": self.jwks_url,
            "introspection_endpoint": self.introspection_url,
        }

    def sign_in_options(self) -> SignInOptions:
        return SignInOptions(
            response_type=self.response_type,
            response_mode=self.response_mode,
            scope=self.scope,
            locale=self.locale,
            redirect_uri=self.redirect_uri,
            post_login_url=self.post_login_url,
            post_logout_url=self.post_logout_url,
            logout_at_provider=self.logout_at_provider,
            default_token_lifetime=self.token_default_lifetime,
        )

    def verification_policy(self) -> VerificationPolicy:
        return VerificationPolicy(
            mode=self.token_verification,
            algorithms=self.token_algorithms,
            leeway=self.token_verification_leeway,
            key_refetch_interval=self.jwks_refetch_interval,
        )

    def credentials(self) -> ClientCredentials:
        return ClientCredentials(
            client_id=self.client_id,
            client_secret=self.client_secret,
            auth_method=self.client_auth_method,
        )

    def timeouts(self) -> Timeouts:
        return Timeouts(connect=self.connect_timeout, read=self.read_timeout)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.token_retry_attempts,
            backoff_base=self.token_backoff_base,
            backoff_max=self.token_backoff_max,
            cooldown=self.token_cooldown,
            retry_after_max=self.token_retry_after_max,
        )

    def sign_in_cookie_name(self) -> str:
        """The cookie holding the sign-ins in progress, named after the session cookie."""
        return self.cookie_options().name + "_signin"

    def cookie_options(self) -> CookieOptions:
        """The cookies' attributes: Secure decided by the configured callback URL, not by
        a request's Host header (which a TLS proxy may not pass on)."""
        secure = self.cookie_secure
        if secure is None and self.redirect_uri is not None:
            secure = urlsplit(self.redirect_uri).scheme == "https"
        return CookieOptions(
            name=cookie_name(self.session_cookie, secure, self.cookie_path, self.cookie_domain),
            path=self.cookie_path,
            domain=self.cookie_domain,
            secure=secure,
            samesite=self.cookie_samesite,
            max_age=self.session_max_age,
        )

    def cache_policy(self) -> CachePolicy:
        return CachePolicy(
            leeway=self.token_leeway,
            refresh_window=self.token_refresh_window,
            default_lifetime=self.token_default_lifetime,
        )


def _read_env_files(env_file: Any, encoding: str | None) -> dict[str, str | None]:
    """The variables of the ``.env`` file(s) the settings read; missing files count as empty."""
    if env_file is None:
        return {}
    paths = [env_file] if isinstance(env_file, str | os.PathLike) else list(env_file)
    variables: dict[str, str | None] = {}
    for path in paths:
        file = Path(path).expanduser()
        if file.is_file():
            variables.update(dotenv_values(file, encoding=encoding or "utf-8"))
    return variables


def unknown_variables(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """The ``CORPAUTH_*`` names among ``names`` that no setting reads (case-insensitive)."""
    known_upper = {name.upper() for name in known}
    return sorted(
        {
            name
            for name in names
            if name.upper().startswith(ENV_PREFIX) and name.upper() not in known_upper
        }
    )


def _warn_about_unknown_variables(
    known: tuple[str, ...], *, environ: Mapping[str, str], dotenv: Mapping[str, str | None]
) -> None:
    """Log one warning naming misspelled or unknown variables (never their values)."""
    found = [(name, "environment") for name in unknown_variables(environ, known)]
    found += [(name, ".env") for name in unknown_variables(dotenv, known)]
    if not found:
        return
    described = []
    for name, origin in found:
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        described.append(f"{name} ({origin}{hint})")
    logger.warning("ignoring unknown fastapi-corpauth settings: %s", ", ".join(described))


def _sentinel_address(item: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port defaults to Sentinel's 26379) as a pair."""
    problem = ValueError("each Sentinel must be host:port, separated by commas")
    try:
        parts = urlsplit("//" + item.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        raise problem from None
    if not host or parts.path or parts.query or parts.fragment or parts.username is not None:
        raise problem
    return host, port if port is not None else 26379


def _only_in_sentinel_mode(given: bool, info: ValidationInfo, *, required: bool = True) -> None:
    sentinel = info.data.get("redis_mode") == "sentinel"
    if sentinel and required and not given:
        raise ValueError("is required when CORPAUTH_REDIS_MODE is sentinel")
    if given and not sentinel and "redis_mode" in info.data:
        raise ValueError("is only used when CORPAUTH_REDIS_MODE is sentinel")


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    variables: list[str] = []
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = ENV_PREFIX + field.upper() if field else ENV_PREFIX + "*"
        variables.append(variable)
        message = "is required" if error["type"] == "missing" else str(error["msg"])
        problems.append(f"{variable} {message}")
    return ConfigurationError(
        "invalid fastapi-corpauth settings: " + "; ".join(problems),
        variables=tuple(variables),
    )
