"""Reading configuration from the environment: the one place that does.

``CorpAuthSettings`` is a pydantic-settings model. Every field can be passed in code or
set as ``CORPAUTH_<FIELD>`` in the environment or a ``.env`` file. It converts itself
into the small value objects of ``_config`` that the rest of the package takes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
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
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://, rediss:// or unix:// URL; shares tokens and sessions. Masked.",
    )
    redis_prefix: str = Field(default="corpauth", max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    redis_timeout: float = Field(default=0.5, gt=0, le=30)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _configuration_error(exc) from exc

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
