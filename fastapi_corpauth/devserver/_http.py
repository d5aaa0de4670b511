"""HTTP helpers shared by the token endpoint and the browser endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = [
    "NO_STORE",
    "bearer_token",
    "first_values",
    "issuer_url",
    "oauth_error",
    "parse_form",
    "realm_not_found",
    "root_path",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str | None = None) -> JSONResponse:
    """A token-endpoint error as Keycloak sends it: JSON, no-store, no WWW-Authenticate."""
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Fields by name, the first value winning like JAX-RS ``getFirst``."""
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def parse_form(body: bytes, content_type: str | None) -> dict[str, str]:
    """Fields of an urlencoded form body, first value winning like JAX-RS ``getFirst``.

    A body that is not form-encoded has no fields, which makes Keycloak answer "Missing
    form parameter: grant_type", as it does for a JSON body.
    """
    if not (content_type or "").lower().startswith("application/x-www-form-urlencoded"):
        return {}
    text = body.decode("utf-8", errors="replace")
    return first_values(parse_qsl(text, keep_blank_values=True, errors="replace"))


def realm_not_found() -> JSONResponse:
    """Keycloak's answer for any path under an unknown realm."""
    return JSONResponse({"error": "Realm does not exist"}, status_code=404)


def root_path(request: Request) -> str:
    """The mount prefix of the devserver (``""`` when it is the top-level app)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def issuer_url(request: Request, realm: str) -> str:
    """``{base}/realms/{realm}`` including the mount prefix, as a proxied Keycloak reports it.

    ``request.base_url`` is the top-level app's root, so a devserver mounted at ``/idp``
    would report the wrong issuer; the scope's ``root_path`` includes the mount.
    """
    return f"{request.url.scheme}://{request.url.netloc}{root_path(request)}/realms/{realm}"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
