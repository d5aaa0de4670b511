"""Reading configuration from the environment: the one place that does.

``CorpAuthSettings`` is a pydantic-settings model. Every field can be passed in code or
set as ``CORPAUTH_<FIELD>`` in the environment or a ``.env`` file. It converts itself
into the small value objects of ``_config`` that the rest of the package takes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._config import (
    CachePolicy,
    ClientAuthMethod,
    ClientCredentials,
    CookieOptions,
    Endpoints,
    RetryPolicy,
    Timeouts,
)
from ._errors import ConfigurationError

__all__ = ["CorpAuthSettings"]

ENV_PREFIX = "CORPAUTH_"


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
    authorize_url: str | None = Field(default=None, description="Overrides {issuer}/.../auth.")
    token_url: str | None = Field(default=None, description="Overrides {issuer}/.../token.")
    logout_url: str | None = Field(default=None, description="Overrides {issuer}/.../logout.")
    scope: str = Field(default="corp", description="Scope requested; empty sends none.")
    api_base_url: str = Field(
        default="https://api.businessonline.ge/api", description="Base URL of the bank API."
    )
    client_auth_method: ClientAuthMethod = "client_secret_basic"

    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)

    token_leeway: float = Field(default=30.0, ge=0)
    token_refresh_window: float = Field(default=60.0, ge=0)
    token_default_lifetime: float = Field(default=60.0, gt=0)
    token_retry_attempts: int = Field(default=3, ge=1, le=10)
    token_backoff_base: float = Field(default=0.2, ge=0)
    token_backoff_max: float = Field(default=5.0, ge=0)
    token_cooldown: float = Field(default=5.0, ge=0)

    # Browser sign-in (the login router and current_user)
    redirect_uri: str | None = Field(
        default=None, description="Absolute callback URL; derived from the request if unset."
    )
    response_type: Literal["token", "code"] = "token"
    response_mode: Literal["fragment", "form_post", "query"] | None = None
    locale: Literal["en", "ka"] = "en"
    session_secret: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Signing keys, comma-separated, oldest first; newest signs."
    )
    session_max_age: int = Field(default=8 * 3600, gt=0)
    session_cookie: str = Field(default="corpauth_session", pattern=r"^[A-Za-z0-9_.\-]+$")
    cookie_path: str = Field(default="/", pattern=r"^/")
    cookie_domain: str | None = None
    cookie_secure: bool | None = Field(
        default=None, description="None: Secure except on plain-http localhost."
    )
    cookie_samesite: Literal["lax", "strict"] = "lax"
    state_max_age: int = Field(default=600, gt=0, le=3600)
    session_store_max_entries: int = Field(default=10_000, gt=0)
    post_login_url: str = Field(default="/", pattern=r"^/")
    post_logout_url: str = Field(default="/", pattern=r"^/")
    logout_at_provider: bool = False
    login_redirect: bool = Field(
        default=False, description="Send browsers asking for HTML to /login instead of a 401."
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
    redis_prefix: str = Field(default="corpauth", max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    redis_timeout: float = Field(default=0.5, gt=0, le=30)
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

    @field_validator(
        "issuer", "authorize_url", "token_url", "logout_url", "api_base_url", "redirect_uri"
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

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
        return Endpoints.from_issuer(
            self.issuer,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            logout_url=self.logout_url,
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
        )

    def cookie_options(self) -> CookieOptions:
        return CookieOptions(
            name=self.session_cookie,
            path=self.cookie_path,
            domain=self.cookie_domain,
            secure=self.cookie_secure,
            samesite=self.cookie_samesite,
            max_age=self.session_max_age,
        )

    def cache_policy(self) -> CachePolicy:
        return CachePolicy(
            leeway=self.token_leeway,
            refresh_window=self.token_refresh_window,
            default_lifetime=self.token_default_lifetime,
        )


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
