"""Sign-in sessions: pending states and signed-in sessions kept server-side.

The browser holds one cookie: a signed, random session id. Everything else is in a
``SessionStore`` under keys derived one-way from the values they protect
(``fingerprint``), so a dump of the store yields neither usable cookies nor states.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from ._errors import StateError
from ._login_protocol import ResponseMode, ResponseType, fingerprint, new_state
from ._signing import new_session_id
from ._store import SessionStore, StoreUnavailable
from ._token import Token
from ._verification import VerifiedToken

__all__ = ["PendingLogin", "SessionManager", "SignedInUser"]

logger = logging.getLogger("fastapi_corpauth.session")
_T = TypeVar("_T")

#: Seconds a pending sign-in is remembered after it expires, to name the failure.
STATE_GRACE = 60.0

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


@dataclass(frozen=True, repr=False)
class SignedInUser:
    """The signed-in customer of this request.

    ``subject`` and ``profile`` come from claims the bank vouched for when the customer
    signed in (a verified signature or the bank's introspection answer), never from
    what the browser sent alone. ``client_id`` is the application the token was issued
    to.
    """

    token: Token
    signed_in_at: float
    subject: str = ""
    client_id: str = ""
    profile: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def access_token(self) -> str:
        return self.token.access_token

    @property
    def expires_at(self) -> float:
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
class PendingLogin:
    """What ``/login`` remembered for the callback, under its state."""

    next_url: str
    redirect_uri: str
    response_type: ResponseType
    response_mode: ResponseMode
    code_verifier: str | None
    locale: str
    nonce: str | None = None

    def __repr__(self) -> str:
        return f"PendingLogin(next_url={self.next_url!r}, response_type={self.response_type!r})"


class SessionManager:
    """Creates, reads and ends sessions and pending sign-ins in a ``SessionStore``.

    Store failures never surface as errors: a session that cannot be read is "signed
    out", and a warning is logged once per outage rather than once per request.
    """

    def __init__(
        self,
        *,
        store: SessionStore,
        session_max_age: float,
        state_max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._session_max_age = session_max_age
        self._state_max_age = state_max_age
        self._clock = clock
        self._store_failing = False

    def __repr__(self) -> str:
        return f"SessionManager(store={self.store!r})"

    async def begin_login(
        self,
        *,
        browser_id: str,
        next_url: str,
        redirect_uri: str,
        response_type: ResponseType,
        response_mode: ResponseMode,
        code_verifier: str | None,
        locale: str,
        nonce: str | None = None,
    ) -> str:
        """Remember a sign-in attempt of this browser; return its new ``state``.

        Each attempt has its own state, so several tabs can sign in at once.

        Raises:
            StoreUnavailable: the store is down (the sign-in cannot be started safely).
        """
        state = new_state()
        browser = await self._binding(browser_id)
        now = self._clock()
        record = {
            "browser": browser,
            "expires_at": now + self._state_max_age,
            "next_url": next_url,
            "redirect_uri": redirect_uri,
            "response_type": response_type,
            "response_mode": response_mode,
            "code_verifier": code_verifier,
            "nonce": nonce,
            "locale": locale,
        }
        # Kept a little longer than valid, so a late callback is told "expired", not
        # "unknown"; short-lived, so pending sign-ins never outlive (and, in a bounded
        # store, never push out) the sessions of customers already signed in.
        ttl = self._state_max_age + STATE_GRACE
        await self._guard(self.store.set(_state_key(state), record, ttl=ttl))
        return state

    async def consume_state(self, *, state: str | None, browser_id: str | None) -> PendingLogin:
        """Take the pending sign-in for ``state``: single use, bound to this browser.

        Raises:
            StateError: ``missing``, ``unknown``, ``reused``, ``expired`` or ``mismatch``.
            StoreUnavailable: the store is down.
        """
        if not state:
            raise StateError("the callback carries no state", problem="missing")
        record = await self._guard(self.store.pop(_state_key(state)))
        if record is None:
            if await self._guard(self.store.get(_used_key(state))) is not None:
                raise StateError("this sign-in was already completed", problem="reused")
            raise StateError("this sign-in was not started here", problem="unknown")
        now = self._clock()
        # The "used" marker is brief: it only names a quick replay ("reused"). It has
        # its own key prefix so that a full in-process store drops markers first.
        remaining = float(record["expires_at"]) - now
        marker_ttl = max(1.0, min(remaining, STATE_GRACE))
        await self._guard(self.store.set(_used_key(state), {"used": True}, ttl=marker_ttl))
        if now >= float(record["expires_at"]):
            raise StateError("this sign-in took too long and expired", problem="expired")
        expected = str(record["browser"]).encode()
        actual = (await self._binding(browser_id)).encode() if browser_id else b""
        if not hmac.compare_digest(expected, actual):
            raise StateError("this sign-in was started in another browser", problem="mismatch")
        mode = record.get("response_mode")
        nonce = record.get("nonce")
        return PendingLogin(
            next_url=str(record["next_url"]),
            redirect_uri=str(record["redirect_uri"]),
            response_type="code" if record["response_type"] == "code" else "token",
            response_mode=mode if mode in ("query", "form_post") else "fragment",
            code_verifier=record.get("code_verifier"),
            locale=str(record.get("locale") or "en"),
            nonce=nonce if isinstance(nonce, str) else None,
        )

    async def create_session(
        self, *, token: Token, identity: VerifiedToken, replaces: str | None
    ) -> str:
        """Store a signed-in session for ``token`` under a new id and return the id.

        ``identity`` is what the bank vouched for about the token; the session's profile
        is taken from it alone.

        The id is always new (no session fixation); the browser's previous session, if
        any, is removed. The new session inherits the previous id's binding, so sign-ins
        still in flight in other tabs of this browser can complete.

        Raises:
            StoreUnavailable: the store is down.
        """
        now = self._clock()
        session_id = new_session_id()
        browser = await self._binding(replaces) if replaces else fingerprint(session_id)
        claims = identity.claims
        record = {
            "browser": browser,
            "access_token": token.access_token,
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "scope": list(token.scope),
            "session_state": token.session_state,
            "signed_in_at": now,
            "subject": identity.subject,
            "client_id": identity.client_id,
            "profile": {k: claims[k] for k in PROFILE_CLAIMS if isinstance(claims.get(k), str)},
        }
        ttl = min(self._session_max_age, token.expires_at - now)
        await self._guard(self.store.set(_session_key(session_id), record, ttl=ttl))
        if replaces:
            await self._guard(self.store.delete(_session_key(replaces)))
        return session_id

    async def load_user(self, session_id: str | None) -> SignedInUser | None:
        """The signed-in user of ``session_id``, or None (also when the store is down)."""
        if not session_id:
            return None
        try:
            record = await self._guard(self.store.get(_session_key(session_id)))
        except StoreUnavailable:
            return None
        if record is None:
            return None
        try:
            token = Token(
                access_token=str(record["access_token"]),
                token_type="Bearer",  # noqa: S106 - type name, not a secret
                issued_at=float(record["issued_at"]),
                expires_at=float(record["expires_at"]),
                scope=tuple(record.get("scope") or ()),
                session_state=record.get("session_state"),
            )
            user = SignedInUser(
                token=token,
                signed_in_at=float(record["signed_in_at"]),
                subject=str(record["subject"]),
                client_id=str(record.get("client_id") or ""),
                profile=MappingProxyType(dict(record.get("profile") or {})),
            )
        except (KeyError, TypeError, ValueError):
            logger.warning("discarding an unreadable session record")
            return None
        if token.is_expired(self._clock()):
            return None
        return user

    async def end_session(self, session_id: str | None) -> None:
        """Remove the session server-side, so a copied cookie is useless afterwards."""
        if session_id:
            try:
                await self._guard(self.store.delete(_session_key(session_id)))
            except StoreUnavailable:
                logger.warning("could not remove a session from the store")

    async def _binding(self, browser_id: str) -> str:
        """What pending sign-ins of this browser are bound to.

        The fingerprint of the id the browser held when it first started signing in:
        a session carries it over from the id it replaced, because the id changes at
        every sign-in while other tabs may still be waiting for their callbacks.

        Raises:
            StoreUnavailable: the store is down.
        """
        record = await self._guard(self.store.get(_session_key(browser_id)))
        inherited = record.get("browser") if record is not None else None
        return inherited if isinstance(inherited, str) and inherited else fingerprint(browser_id)

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


def _state_key(state: str) -> str:
    return "state:" + fingerprint(state)


def _used_key(state: str) -> str:
    return "used:" + fingerprint(state)


def _session_key(session_id: str) -> str:
    return "session:" + fingerprint(session_id)
