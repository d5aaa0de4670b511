"""The session cookie: a signed, opaque session id, and nothing else."""

from __future__ import annotations

from fastapi import Request, Response

from ._config import CookieOptions
from ._signing import CookieSigner
from ._web import is_loopback

__all__ = ["SessionCookies"]


class SessionCookies:
    """Reads and writes the browser's session cookie.

    The value is a random session id signed with ``signer`` (itsdangerous, key list,
    a salt of its own); the session itself stays server-side. The cookie is always
    HttpOnly; ``Secure`` unless ``options.secure`` says otherwise or, when it is None,
    on plain-http localhost only.
    """

    def __init__(self, *, signer: CookieSigner, options: CookieOptions) -> None:
        self._signer = signer
        self.options = options

    def __repr__(self) -> str:
        return f"SessionCookies(name={self.options.name!r})"

    def session_id(self, request: Request) -> str | None:
        """The verified session id from the request's cookie, or None."""
        return self.load(request.cookies.get(self.options.name))

    def load(self, value: str | None) -> str | None:
        """The session id signed in a cookie value, or None when it does not verify."""
        return self._signer.load(value)

    def set(self, request: Request, response: Response, session_id: str) -> None:
        options = self.options
        response.set_cookie(
            options.name,
            self._signer.sign(session_id),
            max_age=options.max_age,
            path=options.path,
            domain=options.domain,
            secure=self._secure(request),
            httponly=True,
            samesite=options.samesite,
        )

    def clear(self, request: Request, response: Response) -> None:
        options = self.options
        response.delete_cookie(
            options.name,
            path=options.path,
            domain=options.domain,
            secure=self._secure(request),
            httponly=True,
            samesite=options.samesite,
        )

    def _secure(self, request: Request) -> bool:
        if self.options.secure is not None:
            return self.options.secure
        base = request.base_url  # not request.url: it raises for a non-UTF-8 query string
        return not (base.scheme == "http" and is_loopback(base.hostname))
