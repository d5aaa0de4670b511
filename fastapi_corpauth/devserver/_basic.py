"""Client authentication from ``Authorization: Basic``, decoded as Keycloak does.

Keycloak >= 19 follows RFC 6749 §2.3.1: after base64 it splits at the first ``:`` and
form-urldecodes both halves with Java's ``URLDecoder`` (``+`` is a space, a malformed
``%`` escape is an error). Older servers skip the URL decoding, so an RFC-encoded secret
with special characters fails there. Reproducing both lets tests pin the client's encoding.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_plus

__all__ = ["ClientAuthParseError", "form_urldecode_strict", "parse_basic_credentials"]

_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ClientAuthParseError(ValueError):
    """The header could not be decoded; Keycloak answers its catch-all 400 for this."""


def form_urldecode_strict(text: str) -> str:
    """Decode like ``java.net.URLDecoder.decode(text, "UTF-8")``.

    Python's ``unquote_plus`` silently keeps a malformed ``%`` escape; Java throws, and
    Keycloak turns that into "Unexpected error when authenticating client".
    """
    if _MALFORMED_ESCAPE.search(text):
        raise ClientAuthParseError("malformed percent-escape")
    return unquote_plus(text, encoding="utf-8", errors="replace")


def parse_basic_credentials(authorization: str, *, url_decode: bool) -> tuple[str, str] | None:
    """Return ``(client_id, client_secret)`` from an ``Authorization`` header value.

    ``None`` means the header is not usable Basic credentials (another scheme, or no
    ``:``), which Keycloak treats as "no header" when the form names a client, and
    otherwise answers with a Basic challenge.
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip()).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        raise ClientAuthParseError("bad base64") from exc
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        return None
    if url_decode:
        return form_urldecode_strict(client_id), form_urldecode_strict(client_secret)
    return client_id, client_secret
