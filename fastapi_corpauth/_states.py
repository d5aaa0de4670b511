"""Sign-in ``state`` values that say who issued them and when: pure functions.

A state is 128 random bits, the second it was issued and an HMAC of both under a key
derived from the session secrets, base64url (48 characters). The server keeps nothing
per started sign-in: the pending sign-in lives, sealed, in the browser that started it,
and the state alone tells an unknown value from an expired one without any storage, so
a flood of anonymous sign-ins costs no memory at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from typing import Literal

__all__ = ["StateVerdict", "mint_state", "read_state"]

_RANDOM_BYTES = 16
_TIME_BYTES = 4
_MAC_BYTES = 16
_LENGTH = _RANDOM_BYTES + _TIME_BYTES + _MAC_BYTES

#: ``issued``: this app issued it and it is young enough; ``expired``: issued here, too
#: old; ``unknown``: not issued here (or tampered with).
StateVerdict = Literal["issued", "expired", "unknown"]


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"state" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def mint_state(key: bytes, *, now: float) -> str:
    """A new state issued at ``now`` under ``key`` (the newest state key)."""
    body = secrets.token_bytes(_RANDOM_BYTES) + struct.pack(">I", int(now) & 0xFFFFFFFF)
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode("ascii")


def read_state(state: str, keys: Sequence[bytes], *, now: float, max_age: float) -> StateVerdict:
    """Whether ``state`` was issued here (under any of ``keys``) and is still young.

    A state from up to 5 seconds in the future is accepted (clock steps between
    workers); one issued ``max_age`` seconds ago or earlier is ``expired``.
    """
    if len(state) != 48 or not state.isascii():
        return "unknown"
    try:
        raw = base64.urlsafe_b64decode(state.encode("ascii"))
    except (binascii.Error, ValueError):
        return "unknown"
    if len(raw) != _LENGTH or base64.urlsafe_b64encode(raw).decode("ascii") != state:
        return "unknown"
    body, mac = raw[: _RANDOM_BYTES + _TIME_BYTES], raw[_RANDOM_BYTES + _TIME_BYTES :]
    if not any(hmac.compare_digest(_mac(key, body), mac) for key in keys):
        return "unknown"
    (issued,) = struct.unpack(">I", body[_RANDOM_BYTES:])
    age = int(now) - issued
    if age < -5 or age >= max_age:
        return "expired"
    return "issued"
