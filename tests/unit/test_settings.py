"""CorpAuthSettings: environment adapter, derived endpoints and clear configuration errors."""

from __future__ import annotations

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
