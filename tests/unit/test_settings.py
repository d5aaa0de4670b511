"""CorpAuthSettings: environment adapter, derived endpoints and clear configuration errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastapi_corpauth import ConfigurationError, CorpAuthSettings

ENV = {
    "CORPAUTH_CLIENT_ID": "corp-app",
    "CORPAUTH_CLIENT_SECRET": "top-secret-value",
    "CORPAUTH_ISSUER": "https://account.bog.ge/auth/realms/bog",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("CORPAUTH_"):
            monkeypatch.delenv(name)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_reads_environment_and_derives_endpoints(env: pytest.MonkeyPatch) -> None:
    settings = CorpAuthSettings()
    endpoints = settings.endpoints()
    base = "https://account.bog.ge/auth/realms/bog/protocol/openid-connect"
    assert endpoints.authorize_url == f"{base}/auth"
    assert endpoints.token_url == f"{base}/token"
    assert endpoints.logout_url == f"{base}/logout"
    assert settings.scope == "corp"
    assert settings.api_base_url == "https://api.businessonline.ge/api"
    assert settings.credentials().client_secret.get_secret_value() == "top-secret-value"


def test_explicit_overrides(env: pytest.MonkeyPatch) -> None:
    env.setenv("CORPAUTH_TOKEN_URL", "https://other.test/token")
    env.setenv("CORPAUTH_SCOPE", "corp openid")
    settings = CorpAuthSettings(authorize_url="https://other.test/auth")
    assert settings.endpoints().token_url == "https://other.test/token"
    assert settings.endpoints().authorize_url == "https://other.test/auth"
    assert settings.scope == "corp openid"


def test_dotenv_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.delenv("CORPAUTH_CLIENT_ID")
    (tmp_path / ".env").write_text("CORPAUTH_CLIENT_ID=from-dotenv\n")
    assert CorpAuthSettings().client_id == "from-dotenv"


def test_missing_settings_name_the_variables(env: pytest.MonkeyPatch) -> None:
    env.delenv("CORPAUTH_CLIENT_ID")
    env.delenv("CORPAUTH_ISSUER")
    with pytest.raises(ConfigurationError) as info:
        CorpAuthSettings()
    assert info.value.variables == ("CORPAUTH_CLIENT_ID", "CORPAUTH_ISSUER")
    assert "CORPAUTH_CLIENT_ID is required" in str(info.value)
    assert "CORPAUTH_ISSUER is required" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CORPAUTH_ISSUER", "account.bog.ge/realms/bog"),
        ("CORPAUTH_ISSUER", "ftp://account.bog.ge"),
        ("CORPAUTH_TOKEN_URL", "https://x.test/token#frag"),
        ("CORPAUTH_READ_TIMEOUT", "-1"),
        ("CORPAUTH_CLIENT_AUTH_METHOD", "private_key_jwt"),
        ("CORPAUTH_CLIENT_SECRET", ""),
    ],
)
def test_invalid_values_name_the_variable_not_the_value(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        CorpAuthSettings()
    assert info.value.variables == (variable,)
    assert variable in str(info.value)
    if value:
        assert value not in str(info.value)


def test_secret_is_masked(env: pytest.MonkeyPatch) -> None:
    settings = CorpAuthSettings()
    for text in (repr(settings), str(settings), repr(settings.credentials())):
        assert "top-secret-value" not in text
    assert "top-secret-value" not in settings.model_dump_json()


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("AUTO", None), ("true", True)])
def test_cookie_secure_accepts_the_documented_auto(
    env: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    env.setenv("CORPAUTH_COOKIE_SECURE", value)
    assert CorpAuthSettings().cookie_secure is expected
    assert CorpAuthSettings(cookie_secure=value).cookie_secure is expected


def test_every_setting_is_described() -> None:
    for name, field in CorpAuthSettings.model_fields.items():
        assert field.description, f"CORPAUTH_{name.upper()} has no description"


def test_unknown_variables_are_named_once_without_their_values(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("CORPAUTH_SESION_SECRET", "value-in-the-environment-0123")
    env.setenv("CORPAUTH_NOT_A_SETTING", "another-value-0123")
    (tmp_path / ".env").write_text(
        "CORPAUTH_REDIS_URLL=redis://:dotenv-password@localhost/0\nCORPAUTH_SCOPE=corp\n"
    )
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    CorpAuthSettings()
    records = [r for r in caplog.records if r.name.startswith("fastapi_corpauth")]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "CORPAUTH_SESION_SECRET (environment; did you mean CORPAUTH_SESSION_SECRET?)" in message
    assert "CORPAUTH_NOT_A_SETTING (environment)" in message
    assert "CORPAUTH_REDIS_URLL (.env; did you mean CORPAUTH_REDIS_URL?)" in message
    assert "CORPAUTH_SCOPE" not in message
    for value in ("value-in-the-environment", "another-value", "dotenv-password"):
        assert value not in message


def test_known_variables_and_no_env_file_warn_about_nothing(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("corpauth_scope", "corp")  # names are case-insensitive, as pydantic reads them
    (tmp_path / ".env").write_text("CORPAUTH_TYPO=1\n")
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    CorpAuthSettings(_env_file=None)
    assert not [r for r in caplog.records if r.name.startswith("fastapi_corpauth")]


def test_a_local_issuer_without_an_api_url_is_named(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_corpauth")
    env.setenv("CORPAUTH_ISSUER", "http://127.0.0.1:9000/realms/bog")
    CorpAuthSettings()
    (record,) = [r for r in caplog.records if r.name.startswith("fastapi_corpauth")]
    assert "CORPAUTH_API_BASE_URL is not set" in record.getMessage()
    assert "https://api.businessonline.ge/api" in record.getMessage()
    caplog.clear()
    env.setenv("CORPAUTH_API_BASE_URL", "http://127.0.0.1:9000/api")
    CorpAuthSettings()
    env.delenv("CORPAUTH_API_BASE_URL")
    env.setenv("CORPAUTH_ISSUER", "https://account.bog.ge/auth/realms/bog")
    CorpAuthSettings()
    assert not [r for r in caplog.records if r.name.startswith("fastapi_corpauth")]
