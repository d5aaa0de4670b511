"""Small helpers of the FastAPI edge that read requests defensively.

Everything a request carries is attacker input: these helpers never raise for hostile
bytes (a non-UTF-8 query string, an oversized or mis-typed body) except with the
package's own errors.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from starlette.datastructures import URL
from starlette.routing import NoMatchFound

from ._errors import CallbackInvalid

__all__ = ["MAX_FORM_BYTES", "login_url", "read_form", "request_path"]

MAX_FORM_BYTES = 64 * 1024


def request_path(request: Request) -> str:
    """The request's path, as ``request.url.path`` gives it.

    ``request.url`` decodes the raw query string as UTF-8 and raises for any other
    bytes, which a hostile client can send; the path alone never needs the query.
    """
    return URL(scope={**request.scope, "query_string": b""}).path


def login_url(request: Request, next_path: str) -> str | None:
    """``/login?next=...`` for this app, or None when the router is not mounted."""
    try:
        base = str(request.url_for("corpauth:login"))
    except NoMatchFound:
        return None
    return base + "?" + urlencode({"next": next_path})


async def read_form(request: Request) -> dict[str, str]:
    """Parse an urlencoded body by hand: bounded, strict UTF-8, first value wins.

    Raises:
        CallbackInvalid: not an urlencoded form, too large, or not UTF-8.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise CallbackInvalid("the callback must be an urlencoded form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise CallbackInvalid("the callback form is too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallbackInvalid("the callback form is not valid UTF-8") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form
