"""The authorization server's metadata: from its discovery document, or Keycloak's paths.

Pure functions and a value object. ``Discovery`` (``_discovery``) reads the document
(OpenID Connect Discovery 1.0, RFC 8414) and hands it here; while it cannot, the
metadata is ``fallback_metadata``: Keycloak's documented paths under the issuer, so the
app starts and sign-in still redirects while the bank is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._config import Endpoints

__all__ = ["DiscoveryDocumentInvalid", "ProviderMetadata", "fallback_metadata", "parse_discovery"]


class DiscoveryDocumentInvalid(ValueError):
    """The discovery document is unusable: not JSON metadata, or another issuer's."""


@dataclass(frozen=True, kw_only=True)
class ProviderMetadata:
    """Where the authorization server's endpoints are, and what it promises.

    ``end_session_endpoint`` is None when the server has none (then signing out ends the
    local session only); ``jwks_uri`` and ``introspection_endpoint`` are None when the
    server publishes no keys or offers no introspection. ``iss_parameter_supported``
    (RFC 9207) makes ``iss`` mandatory in authorization responses. ``discovered`` is
    False for the fallback.
    """

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    introspection_endpoint: str | None
    end_session_endpoint: str | None
    iss_parameter_supported: bool = False
    discovered: bool = False


def discovery_url(issuer: str) -> str:
    """``{issuer}/.well-known/openid-configuration`` (OIDC Discovery §4)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def fallback_metadata(endpoints: Endpoints) -> ProviderMetadata:
    """Keycloak's documented paths (or the configured ones), used until discovery works."""
    return ProviderMetadata(
        issuer=endpoints.issuer,
        authorization_endpoint=endpoints.authorize_url,
        token_endpoint=endpoints.token_url,
        jwks_uri=endpoints.jwks_url,
        introspection_endpoint=endpoints.introspection_url,
        end_session_endpoint=endpoints.logout_url,
    )


def _url(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise DiscoveryDocumentInvalid(f"{name} is not an absolute http(s) URL")
    if parts.fragment:
        raise DiscoveryDocumentInvalid(f"{name} has a fragment")
    return str(value)


def parse_discovery(
    document: Any, *, issuer: str, overrides: Mapping[str, str | None]
) -> ProviderMetadata:
    """Metadata from a discovery document, explicit settings taking precedence.

    ``overrides`` maps metadata names (``authorization_endpoint``, ``token_endpoint``,
    ``jwks_uri``, ``introspection_endpoint``, ``end_session_endpoint``) to configured
    URLs; None leaves discovery's value.

    Raises:
        DiscoveryDocumentInvalid: not a JSON object, an ``issuer`` other than the
            configured one (OIDC Discovery §4.3: it would let another server sign
            customers in), or an endpoint that is not an absolute http(s) URL.
    """
    if not isinstance(document, dict):
        raise DiscoveryDocumentInvalid("the discovery document is not a JSON object")
    announced = document.get("issuer")
    if not isinstance(announced, str) or announced.rstrip("/") != issuer.rstrip("/"):
        raise DiscoveryDocumentInvalid("the discovery document names another issuer")
    values: dict[str, str | None] = {}
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "end_session_endpoint",
    ):
        configured = overrides.get(name)
        values[name] = configured if configured is not None else _url(document, name)
    authorization = values["authorization_endpoint"]
    token = values["token_endpoint"]
    if authorization is None or token is None:
        raise DiscoveryDocumentInvalid("the discovery document lacks the sign-in endpoints")
    return ProviderMetadata(
        issuer=issuer.rstrip("/"),
        authorization_endpoint=authorization,
        token_endpoint=token,
        jwks_uri=values["jwks_uri"],
        introspection_endpoint=values["introspection_endpoint"],
        end_session_endpoint=values["end_session_endpoint"],
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
        is True,
        discovered=True,
    )
