"""The session cookie: a signed, opaque session id, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request, Response

from ._config import CookieOptions
from ._net import is_loopback
from ._sealing import Sealer
from ._signing import CookieSigner

__all__ = ["SessionCookies", "SignInCookie", "secure_cookie"]


def secure_cookie(options: CookieOptions, request: Request) -> bool:
    """Whether the app's cookies get ``Secure``: as configured, else everywhere except
    plain-http localhost."""
    if options.secure is not None:
        return options.secure
    base = request.base_url  # not request.url: it raises for a non-UTF-8 query string
    return not (base.scheme == "http" and is_loopback(base.hostname))


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
            secure=secure_cookie(options, request),
            httponly=True,
            samesite=options.samesite,
        )

    def clear(self, request: Request, response: Response) -> None:
        options = self.options
        response.delete_cookie(
            options.name,
            path=options.path,
            domain=options.domain,
            secure=secure_cookie(options, request),
            httponly=True,
            samesite=options.samesite,
        )


class SignInCookie:
    """The browser's sign-ins in progress, in one short-lived, sealed cookie.

    Nothing is kept on the server for a sign-in that has started: its return address,
    PKCE verifier, nonce and the rest travel sealed (``Sealer``, AES-GCM) in this cookie,
    so an anonymous flood of ``/login`` requests costs the server nothing and cannot push
    signed-in customers out of a bounded store. The cookie binds each sign-in to the
    browser that started it (login CSRF defence) and holds the ``max_entries`` newest,
    so several tabs can sign in at once. HttpOnly, SameSite=Lax, Secure like the session
    cookie, and gone after ``max_age`` seconds.
    """

    def __init__(
        self,
        *,
        sealer: Sealer,
        options: CookieOptions,
        name: str,
        max_age: int,
        max_entries: int = 5,
    ) -> None:
        self._sealer = sealer
        self._options = options
        self.name = name
        self._max_age = max_age
        self._max_entries = max_entries

    def __repr__(self) -> str:
        return f"SignInCookie(name={self.name!r})"

    def read(self, request: Request) -> list[dict[str, Any]]:
        """The entries in the request's cookie (none when absent or not genuine)."""
        value = request.cookies.get(self.name)
        if not value:
            return []
        opened = self._sealer.open(value, where=self.name)
        entries = opened.get("entries") if opened is not None else None
        if not isinstance(entries, list):
            return []
        return [entry for entry in entries if isinstance(entry, dict)]

    def write(
        self, request: Request, response: Response, entries: Sequence[Mapping[str, Any]]
    ) -> None:
        """Set the cookie to ``entries`` (the newest kept), or delete it when empty."""
        options = self._options
        if not entries:
            if request.cookies.get(self.name) is not None:
                response.delete_cookie(
                    self.name,
                    path=options.path,
                    domain=options.domain,
                    secure=secure_cookie(options, request),
                    httponly=True,
                    samesite="lax",
                )
            return
        kept = [dict(entry) for entry in entries][-self._max_entries :]
        response.set_cookie(
            self.name,
            self._sealer.seal({"entries": kept}, where=self.name),
            max_age=self._max_age,
            path=options.path,
            domain=options.domain,
            secure=secure_cookie(options, request),
            httponly=True,
            samesite="lax",
        )
