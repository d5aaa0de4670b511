"""Sealing: authenticated encryption of what the app keeps outside its own memory.

Signed is not encrypted: a session record in Redis, or a pending sign-in in a cookie,
holds tokens and return addresses that whoever reads them must not learn and whoever
writes them must not forge. ``Sealer`` encrypts and authenticates them with AES-256-GCM
under keys derived (HKDF-SHA256) from the configured secrets:

* one master key per secret, newest last as for the cookie signer: the newest seals,
  every key opens, so secrets rotate like the session keys;
* a key per purpose (``session``, ``sign-in``, ``token``...), so a value sealed for one
  purpose never opens as another;
* optionally a key per record, derived from a value that is not stored next to it
  (a session's id, which only the browser holds): whoever reads the store, even with the
  app's secrets, learns nothing without the browser's cookie;
* the record's place (its store key) as associated data, so records cannot be swapped.

A value that does not open is treated as absent by the callers; nothing here raises for
hostile input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

__all__ = ["Sealer", "derive_keys"]

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_ID_BYTES = 4
#: Per-record keys remembered, so a busy session does not redo HKDF on every request.
_RECORD_KEYS_CACHED = 4096
#: Longest sealed text looked at (cookies are far smaller; records a few KB).
MAX_SEALED_LENGTH = 256 * 1024


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def derive_keys(secrets: Sequence[SecretStr | str], *, purpose: str) -> list[bytes]:
    """One 256-bit key per configured secret for ``purpose``, in the secrets' order."""
    info = b"fastapi_corpauth " + purpose.encode("utf-8")
    return [
        _hkdf((s.get_secret_value() if isinstance(s, SecretStr) else s).encode("utf-8"), info)
        for s in secrets
    ]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals JSON records for one purpose under the configured secrets.

    ``secrets`` are ordered oldest to newest (at least one). The sealed form is URL- and
    cookie-safe text: version, key id, nonce and ciphertext, base64url.

    Raises:
        ValueError: no secret given.
    """

    def __init__(self, *, secrets: Sequence[SecretStr | str], purpose: str) -> None:
        if not secrets:
            raise ValueError("sealing needs at least one secret")
        masters = derive_keys(secrets, purpose="seal " + purpose)
        # Newest first: it seals, and is the likeliest to open.
        self._keys = [(hashlib.sha256(k).digest()[:_KEY_ID_BYTES], k) for k in reversed(masters)]
        self._purpose = purpose
        self._record_keys: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()

    def __repr__(self) -> str:
        return f"Sealer(purpose={self._purpose!r}, keys={len(self._keys)})"

    def seal(self, record: Mapping[str, Any], *, where: str, context: str = "") -> str:
        """``record`` (JSON-compatible) sealed for the place ``where``.

        ``context``, when given, is mixed into the key and needed to open it again.
        """
        key_id, master = self._keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        plaintext = json.dumps(record, separators=(",", ":")).encode("utf-8")
        aead = AESGCM(self._record_key(master, key_id, context))
        ciphertext = aead.encrypt(nonce, plaintext, where.encode("utf-8"))
        return _b64encode(_VERSION + key_id + nonce + ciphertext)

    def open(self, sealed: object, *, where: str, context: str = "") -> dict[str, Any] | None:
        """The record sealed for ``where`` (and ``context``), or None when ``sealed`` is
        not one: tampered, truncated, sealed elsewhere, for another purpose, under a
        retired secret, or not a sealed value at all."""
        if not isinstance(sealed, str) or len(sealed) > MAX_SEALED_LENGTH:
            return None
        try:
            raw = _b64decode(sealed)
        except (binascii.Error, ValueError):
            return None
        header = 1 + _KEY_ID_BYTES + _NONCE_BYTES
        if len(raw) <= header or raw[:1] != _VERSION:
            return None
        key_id = raw[1 : 1 + _KEY_ID_BYTES]
        nonce = raw[1 + _KEY_ID_BYTES : header]
        for candidate_id, master in self._keys:
            if candidate_id != key_id:
                continue
            aead = AESGCM(self._record_key(master, candidate_id, context))
            try:
                plaintext = aead.decrypt(nonce, raw[header:], where.encode("utf-8"))
            except InvalidTag:
                continue
            try:
                record = json.loads(plaintext)
            except (ValueError, RecursionError):
                return None
            return record if isinstance(record, dict) else None
        return None

    def _record_key(self, master: bytes, key_id: bytes, context: str) -> bytes:
        if not context:
            return master
        # Keyed by a digest: the cache holds no session id in the clear.
        cache_key = (key_id, hashlib.sha256(context.encode("utf-8")).hexdigest())
        found = self._record_keys.get(cache_key)
        if found is not None:
            self._record_keys.move_to_end(cache_key)
            return found
        derived = _hkdf(master, b"record " + context.encode("utf-8"))
        self._record_keys[cache_key] = derived
        if len(self._record_keys) > _RECORD_KEYS_CACHED:
            self._record_keys.popitem(last=False)
        return derived
