"""Signing of the session id that the browser keeps in its cookie.

The cookie holds only an opaque session id (the session itself lives in a
``SessionStore``), signed with itsdangerous so that a client cannot forge or swap ids.
Signed is not encrypted: anyone can read the cookie, so it must never carry a token.

Keys are given oldest to newest. The newest signs and every key verifies, so a new key
can be appended without signing everyone out; once sessions signed with an old key have
expired, the old key is removed. The salt separates purposes: a value signed as a
session cookie is not valid as anything else, even under the same keys.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode
from pydantic import SecretStr

from fastapi_corpauth._errors import ConfigurationError, CorpAuthError

__all__ = [
    "CookieExpired",
    "CookieInvalid",
    "CookieSigner",
    "new_session_id",
]

#: Longest signed value ``unsign`` will look at; browsers cap a cookie at about 4 KiB.
MAX_SIGNED_LENGTH = 4096
#: Verified cookies remembered, so a browser's every request does not redo the HMAC.
VERIFIED_CACHE_SIZE = 4096


class CookieExpired(CorpAuthError):
    """The cookie's signature is genuine but older than ``max_age`` (or from the future).

    ``signed_at`` is when it was signed (seconds since the epoch), when known.
    """

    code = "session_expired"

    def __init__(self, message: str, *, signed_at: float | None = None) -> None:
        super().__init__(message)
        self.signed_at = signed_at


class CookieInvalid(CorpAuthError):
    """The cookie was not signed by us for this purpose: tampered, forged, truncated,
    signed with a retired key or another salt, or not a signed value at all."""

    code = "session_invalid"


def new_session_id() -> str:
    """Return a fresh, unguessable session id (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class _ClockedSigner(TimestampSigner):
    """A ``TimestampSigner`` that reads time from an injected clock.

    itsdangerous takes the time from ``get_timestamp`` both when signing and when
    checking ``max_age``, and documents overriding it to control time.
    """

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class CookieSigner:
    """Signs and verifies session ids with rotating keys, a salt and a maximum age.

    Raises ``ConfigurationError`` (a ``ValueError``) at construction when there is no
    key, a key is empty, the salt is empty or ``max_age`` is not a positive number.
    """

    def __init__(
        self,
        *,
        secret_keys: Sequence[str | SecretStr],
        salt: str,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A lone str is a Sequence[str] too: it would become one key per character.
        if isinstance(secret_keys, str | SecretStr):
            raise ConfigurationError("secret_keys must be a list of keys, not a single key")
        keys = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in secret_keys]
        if not keys:
            raise ConfigurationError("secret_keys must contain at least one key")
        if not all(keys):
            raise ConfigurationError("secret_keys must not contain an empty key")
        if not salt:
            raise ConfigurationError("salt must not be empty")
        if not (math.isfinite(max_age) and max_age > 0):
            raise ConfigurationError("max_age must be a positive number of seconds")
        self._salt = salt
        self._key_count = len(keys)
        # Timestamps are whole seconds, so "age > max_age" equals "age > floor(max_age)".
        self._max_age = math.floor(max_age)
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            keys,
            salt=salt,
            signer=_ClockedSigner,
            signer_kwargs={"digest_method": hashlib.sha256, "clock": clock},
        )
        # Exact cookie strings already verified under these keys -> (value, signed_at).
        # The keys never change for an instance, so only the age needs checking again.
        self._verified: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self._key_count}, salt={self._salt!r})"

    def sign(self, value: str) -> str:
        """Return ``value`` signed with the newest key and the current time."""
        return self._serializer.dumps(value)

    def unsign(self, value: str) -> str:
        """Return the value inside a signed cookie.

        Raises ``CookieExpired`` when the signature is genuine but too old, and
        ``CookieInvalid`` for anything else that is not a current signature of ours.
        Messages never include the cookie.
        """
        known = self._verified.get(value)
        if known is not None:
            payload, signed_at = known
            age = int(self._clock()) - signed_at
            if 0 <= age <= self._max_age:
                self._verified.move_to_end(value)
                return payload
            del self._verified[value]
        if len(value) > MAX_SIGNED_LENGTH:
            raise CookieInvalid(f"signed value longer than {MAX_SIGNED_LENGTH} characters")
        if not value.isascii():
            raise CookieInvalid("signed value contains non-ASCII characters")
        try:
            if not _canonical(value):
                raise BadSignature("signed value is not in the form this signer writes")
            payload, signed = self._serializer.loads(
                value, max_age=self._max_age, return_timestamp=True
            )
        except SignatureExpired as exc:
            when = exc.date_signed.timestamp() if exc.date_signed is not None else None
            raise CookieExpired("session cookie expired", signed_at=when) from exc
        except BadData as exc:
            raise CookieInvalid("session cookie signature is invalid") from exc
        if not isinstance(payload, str):
            raise CookieInvalid("session cookie does not hold a session id")
        self._verified[value] = (payload, int(signed.timestamp()))
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return payload

    def load(self, value: str | None) -> str | None:
        """Return the value inside ``value``, or None when it is missing, expired or
        invalid. Never raises: a bad cookie just means "not signed in"."""
        if value is None:
            return None
        try:
            return self.unsign(value)
        except (CookieExpired, CookieInvalid):
            return None


def _canonical(value: str) -> bool:
    """Whether every part of ``value`` is base64 exactly as itsdangerous writes it.

    Its decoder also takes padding and non-zero spare bits, so ``cookie + "="`` or a
    flipped last character would verify as the same cookie: harmless, but a signed
    value should have exactly one spelling.
    """
    parts = value.split(".")
    if len(parts) != 3:
        return False
    try:
        return all(base64_encode(base64_decode(part)).decode() == part for part in parts)
    except BadData:
        return False
