"""Dev users who can sign in on the devserver's login page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = ["DEFAULT_USERS", "DevUser"]


@dataclass(frozen=True, kw_only=True)
class DevUser:
    """A person of a corporate customer, with the profile Keycloak puts into user tokens."""

    username: str
    password: str
    name: str = ""
    email: str = ""
    #: The customer company the user acts for, sent as the ``company`` claim.
    company: str = ""
    #: The token ``sub``; derived from the username when empty, so it is stable across runs.
    user_id: str = ""

    @property
    def subject(self) -> str:
        """The ``sub`` claim: ``user_id``, or a UUID derived from the username."""
        return self.user_id or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"devserver-user:{self.username}")
        )


DEFAULT_USERS: tuple[DevUser, ...] = (
    DevUser(
        username="demo",
        password="demo",
        name="Nino Beridze",
        email="nino.beridze@kartli-logistics.ge",
        company="Kartli Logistics LLC",
    ),
)
