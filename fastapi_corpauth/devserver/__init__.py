"""A small Keycloak-compatible authorization server for local development and tests.

It reproduces the token endpoint of several Keycloak versions exactly (see
:data:`FLAVOURS`), signs dev users in through a browser (authorization endpoint with the
implicit and code flows, a sign-in page in English and Georgian, userinfo and logout),
serves a sample protected bank API, and lets tests revoke tokens and inject faults, so the
plugin can be exercised against every behaviour BOG's server might show without a real
Keycloak. Mount it (``app.mount("/idp", create_devserver())``) or run
``python -m fastapi_corpauth.devserver``.
"""

from ._app import DEFAULT_CLIENTS, create_devserver
from ._flavours import FLAVOURS, Flavour
from ._login import SSO_COOKIE
from ._state import (
    DEFAULT_ACCOUNTS,
    DevClient,
    DevServerState,
    FaultBodyKind,
    FaultPlan,
    SampleAccount,
)
from ._users import DEFAULT_USERS, DevUser

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_CLIENTS",
    "DEFAULT_USERS",
    "FLAVOURS",
    "SSO_COOKIE",
    "DevClient",
    "DevServerState",
    "DevUser",
    "FaultBodyKind",
    "FaultPlan",
    "Flavour",
    "SampleAccount",
    "create_devserver",
]
