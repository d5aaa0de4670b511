"""A small Keycloak-compatible authorization server for local development and tests.

It reproduces the token endpoint of several Keycloak versions exactly (see
:data:`FLAVOURS`), serves a sample protected bank API, and lets tests revoke tokens and
inject faults, so the plugin can be exercised against every behaviour BOG's server might
show without a real Keycloak. Mount it (``app.mount("/idp", create_devserver())``) or run
``python -m fastapi_corpauth.devserver``.
"""

from ._app import DEFAULT_CLIENTS, create_devserver
from ._flavours import FLAVOURS, Flavour
from ._state import (
    DEFAULT_ACCOUNTS,
    DevClient,
    DevServerState,
    FaultBodyKind,
    FaultPlan,
    SampleAccount,
)

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_CLIENTS",
    "FLAVOURS",
    "DevClient",
    "DevServerState",
    "FaultBodyKind",
    "FaultPlan",
    "Flavour",
    "SampleAccount",
    "create_devserver",
]
