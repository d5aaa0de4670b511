"""Signed-in sessions kept server-side, sealed, under one-way keys.

The browser holds one cookie: a signed, random session id. The session itself (the
customer's tokens, the verified identity, when it ends) is in a ``SessionStore`` under
``session:<fingerprint of the id>``, sealed (``Sealer``) with a key derived from the
id itself: a dump of the store, even with the app's secrets, yields no usable cookie,
token or profile, and a record edited or moved in the store opens as nothing (signed
out), never as someone else's session.

Pending sign-ins are not kept here at all (they travel, sealed, in the browser that
started them); the store only remembers, briefly, which states were used (single use).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from ._login_protocol import ResponseType, fingerprint
from ._sealing import Sealer
from ._signing import new_session_id
from ._store import SessionStore, StoreUnavailable
from ._token import Token
from ._verification import VerifiedToken

__all__ = ["SessionManager", "SignedInUser", "StoredSession", "usable_until"]

logger = logging.getLogger("fastapi_corpauth.session")
_T = TypeVar("_T")

#: Verified claims copied into the session: who the customer is, for display and lookups.
PROFILE_CLAIMS = (
    "sub",
    "preferred_username",
    "name",
    "given_name",
    "family_name",
    "email",
    "company",
)
#: Seconds a used state is remembered at least, to name a quick replay "reused".
USED_STATE_MEMORY = 60.0
#: Seconds an ended session is remembered, to answer "session expired" rather than none.
ENDED_SESSION_MEMORY = 300.0
#: Opened records remembered per process (see ``SessionManager.load``): about 3 KB each.
OPENED_RECORDS_REMEMBERED = 1024
_RECORD_VERSION = 2


@dataclass(frozen=True, repr=False)
class SignedInUser:
    """The signed-in customer of this request.

    ``subject``, ``client_id`` and ``profile`` come from what the bank vouched for when
    the customer signed in (a verified signature or the bank's introspection answer),
    never from what the browser sent alone. ``token`` is the customer's current access
    token (renewed by the session, see ``session_ends_at``).
    """

    token: Token
    signed_in_at: float
    subject: str = ""
    client_id: str = ""
    profile: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: When the session ends at the latest, whatever renewals happen before.
    session_ends_at: float = 0.0

    @property
    def access_token(self) -> str:
        return self.token.access_token

    @property
    def expires_at(self) -> float:
        """When the current access token expires (the session renews it)."""
        return self.token.expires_at

    @property
    def display_name(self) -> str | None:
        for claim in ("name", "preferred_username", "email", "sub"):
            value = self.profile.get(claim)
            if isinstance(value, str) and value:
                return value
        return None

    def __repr__(self) -> str:
        return (
            f"SignedInUser(subject={self.subject!r}, name={self.display_name!r}, "
            f"token={self.token!r})"
        )


@dataclass(frozen=True, repr=False)
class StoredSession:
    """A session as the store holds it: the user, and what renewing it needs."""

    session_id: str
    user: SignedInUser
    flow: ResponseType
    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    id_token: str | None = None
    #: When the session was last renewed without a password (implicit flow).
    silently_renewed_at: float | None = None

    @property
    def token(self) -> Token:
        return self.user.token

    def __repr__(self) -> str:
        return f"StoredSession(flow={self.flow!r}, user={self.user!r})"


class SessionManager:
    """Creates, reads, renews and ends sessions in a ``SessionStore``.

    ``sealer`` seals every record (see the module docstring). Store failures never
    surface as errors on reads: a session that cannot be read is "signed out", and a
    warning is logged once per outage rather than once per request.
    """

    def __init__(
        self,
        *,
        store: SessionStore,
        sealer: Sealer,
        session_max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._sealer = sealer
        self._session_max_age = session_max_age
        self._clock = clock
        self._store_failing = False
        self._unreadable_logged = False
        self._opened: OrderedDict[tuple[str, str], StoredSession] = OrderedDict()

    def __repr__(self) -> str:
        return f"SessionManager(store={self.store!r})"

    # --- single use of sign-in states ---------------------------------------------------

    async def claim_state(self, state: str, *, remember_for: float) -> bool:
        """Mark ``state`` used; False if it already was (a replay).

        Raises:
            StoreUnavailable: the store is down (single use cannot be guaranteed).
        """
        ttl = max(USED_STATE_MEMORY, remember_for)
        return await self._guard(self.store.add(_used_key(state), {"used": True}, ttl=ttl))

    async def state_used(self, state: str) -> bool:
        """Whether ``state`` completed a sign-in recently.

        Raises:
            StoreUnavailable: the store is down.
        """
        return await self._guard(self.store.get(_used_key(state))) is not None

    # --- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        token: Token,
        identity: VerifiedToken,
        flow: ResponseType,
        replaces: str | None,
        silent: bool = False,
    ) -> str:
        """Store a new session for ``token`` and return its id.

        The id is always new (no session fixation); the browser's previous session, if
        any, is removed. ``identity`` is what the bank vouched for about the token; the
        session's identity and profile are taken from it alone.

        Raises:
            StoreUnavailable: the store is down.
        """
        now = self._clock()
        session_id = new_session_id()
        claims = identity.claims
        user = SignedInUser(
            token=token,
            signed_in_at=now,
            subject=identity.subject,
            client_id=identity.client_id,
            profile=MappingProxyType(
                {k: claims[k] for k in PROFILE_CLAIMS if isinstance(claims.get(k), str)}
            ),
            session_ends_at=now + self._session_max_age,
        )
        stored = StoredSession(
            session_id=session_id,
            user=user,
            flow=flow,
            refresh_token=token.refresh_token,
            refresh_expires_at=token.refresh_expires_at,
            id_token=token.id_token,
            silently_renewed_at=now if silent else None,
        )
        await self.save(stored)
        if replaces:
            await self._guard(self.store.delete(_session_key(replaces)))
        return session_id

    async def renewed(self, stored: StoredSession, token: Token) -> StoredSession:
        """``stored`` with a new token from a refresh (rotation honoured), saved.

        Raises:
            StoreUnavailable: the store is down.
        """
        renewed = StoredSession(
            session_id=stored.session_id,
            user=SignedInUser(
                token=token,
                signed_in_at=stored.user.signed_in_at,
                subject=stored.user.subject,
                client_id=stored.user.client_id,
                profile=stored.user.profile,
                session_ends_at=stored.user.session_ends_at,
            ),
            flow=stored.flow,
            refresh_token=token.refresh_token or stored.refresh_token,
            refresh_expires_at=(
                token.refresh_expires_at if token.refresh_token else stored.refresh_expires_at
            ),
            id_token=token.id_token or stored.id_token,
            silently_renewed_at=stored.silently_renewed_at,
        )
        await self.save(renewed)
        return renewed

    async def save(self, stored: StoredSession) -> None:
        """Write ``stored`` for as long as it can be used (``usable_until``).

        Raises:
            StoreUnavailable: the store is down.
        """
        now = self._clock()
        ttl = usable_until(stored) - now
        if ttl <= 0:
            await self.end_session(stored.session_id)
            return
        # Kept a little longer than it can be used, so that a request just after is told
        # "session expired" rather than "not signed in".
        ttl += ENDED_SESSION_MEMORY
        key = _session_key(stored.session_id)
        record = _record(stored)
        sealed = self._sealer.seal(record, where=key, context=stored.session_id)
        await self._guard(self.store.set(key, {"sealed": sealed}, ttl=ttl))

    async def load(self, session_id: str | None) -> StoredSession | None:
        """The session ``session_id`` names, or None (also when the store is down or the
        record does not open: edited, moved, or sealed under retired secrets).

        A session past ``usable_until`` is returned for a short while, so that callers
        can tell an ended session from none at all.
        """
        if not session_id:
            return None
        key = _session_key(session_id)
        try:
            found = await self._guard(self.store.get(key))
        except StoreUnavailable:
            return None
        if found is None:
            return None
        sealed = found.get("sealed")
        # The store is read every time (a session ended or renewed by another worker is
        # seen at once), but the same sealed record under the same key opens to the same
        # session: remember what it opened to, rather than decrypt and decode it again
        # on every request. Only records that opened are remembered.
        remembered = (key, sealed) if isinstance(sealed, str) else None
        if remembered is not None:
            stored = self._opened.get(remembered)
            if stored is not None:
                self._opened.move_to_end(remembered)
                return stored
        record = self._sealer.open(sealed, where=key, context=session_id)
        stored = _stored(session_id, record) if record is not None else None
        if stored is None:
            if not self._unreadable_logged:
                self._unreadable_logged = True
                logger.warning("a session record did not open; that browser is signed out")
            return None
        if remembered is not None:
            self._opened[remembered] = stored
            if len(self._opened) > OPENED_RECORDS_REMEMBERED:
                self._opened.popitem(last=False)
        return stored

    async def load_user(self, session_id: str | None) -> SignedInUser | None:
        """The signed-in user of ``session_id`` while the session and its access token
        are valid, else None."""
        stored = await self.load(session_id)
        now = self._clock()
        if stored is None or now >= usable_until(stored) or stored.token.is_expired(now):
            return None
        return stored.user

    async def end_session(self, session_id: str | None) -> None:
        """Remove the session server-side, so a copied cookie is useless afterwards."""
        if session_id:
            try:
                await self._guard(self.store.delete(_session_key(session_id)))
            except StoreUnavailable:
                logger.warning("could not remove a session from the store")

    # --- leases: one renewal per session across processes ----------------------------------

    async def acquire_renewal(self, session_id: str, *, lease: float) -> bool:
        """Take the session's renewal lease for ``lease`` seconds; False if taken.

        Raises:
            StoreUnavailable: the store is down.
        """
        key = _lease_key(session_id)
        return await self._guard(self.store.add(key, {"lease": True}, ttl=lease))

    async def release_renewal(self, session_id: str) -> None:
        """Give the lease back (it also lapses by itself)."""
        try:
            await self._guard(self.store.delete(_lease_key(session_id)))
        except StoreUnavailable:
            pass

    async def _guard(self, operation: Awaitable[_T]) -> _T:
        try:
            result = await operation
        except StoreUnavailable:
            if not self._store_failing:
                self._store_failing = True
                logger.warning("session store unavailable; browsers appear signed out")
            raise
        if self._store_failing:
            self._store_failing = False
            logger.warning("session store available again")
        return result


def usable_until(stored: StoredSession) -> float:
    """When ``stored`` stops being usable at the latest.

    A code-flow session lives while its refresh token does (or its access token, without
    one); an implicit one until its end, because the bank's SSO session can renew it.
    Neither outlives ``session_max_age`` from the sign-in.
    """
    user = stored.user
    if stored.flow == "code":
        renewable = stored.refresh_expires_at if stored.refresh_token else None
        return min(user.session_ends_at, renewable or user.token.expires_at)
    return user.session_ends_at


def _record(stored: StoredSession) -> dict[str, Any]:
    user, token = stored.user, stored.user.token
    return {
        "v": _RECORD_VERSION,
        "flow": stored.flow,
        "access_token": token.access_token,
        "issued_at": token.issued_at,
        "expires_at": token.expires_at,
        "scope": list(token.scope),
        "session_state": token.session_state,
        "refresh_token": stored.refresh_token,
        "refresh_expires_at": stored.refresh_expires_at,
        "id_token": stored.id_token,
        "signed_in_at": user.signed_in_at,
        "ends_at": user.session_ends_at,
        "silently_renewed_at": stored.silently_renewed_at,
        "subject": user.subject,
        "client_id": user.client_id,
        "profile": dict(user.profile),
    }


def _stored(session_id: str, record: Mapping[str, Any]) -> StoredSession | None:
    if record.get("v") != _RECORD_VERSION:
        return None
    try:
        flow: Literal["token", "code"] = "code" if record["flow"] == "code" else "token"
        token = Token(
            access_token=str(record["access_token"]),
            token_type="Bearer",  # noqa: S106 - type name, not a secret
            issued_at=float(record["issued_at"]),
            expires_at=float(record["expires_at"]),
            scope=tuple(str(s) for s in record.get("scope") or ()),
            session_state=_optional_str(record.get("session_state")),
            refresh_token=_optional_str(record.get("refresh_token")),
            id_token=_optional_str(record.get("id_token")),
        )
        user = SignedInUser(
            token=token,
            signed_in_at=float(record["signed_in_at"]),
            subject=str(record["subject"]),
            client_id=str(record["client_id"]),
            profile=MappingProxyType(
                {k: v for k, v in dict(record.get("profile") or {}).items() if isinstance(v, str)}
            ),
            session_ends_at=float(record["ends_at"]),
        )
        refresh_expires_at = record.get("refresh_expires_at")
        renewed_at = record.get("silently_renewed_at")
        return StoredSession(
            session_id=session_id,
            user=user,
            flow=flow,
            refresh_token=token.refresh_token,
            refresh_expires_at=float(refresh_expires_at) if refresh_expires_at else None,
            id_token=token.id_token,
            silently_renewed_at=float(renewed_at) if renewed_at else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _used_key(state: str) -> str:
    return "used:" + fingerprint(state)


def _session_key(session_id: str) -> str:
    return "session:" + fingerprint(session_id)


def _lease_key(session_id: str) -> str:
    return "lease:" + fingerprint(session_id)
