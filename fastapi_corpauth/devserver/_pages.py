"""HTML pages of the devserver's browser flow, in English and Georgian.

Every page is self-contained: no third-party content, inline style and script allowed by a
per-response CSP nonce, ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``.
Element ids follow Keycloak's theme (``username``, ``password``, ``kc-login``,
``kc-cancel``, ``kc-logout``) so browser tests can drive either server.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from html import escape
from typing import Final
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse

from ._sessions import Locale

__all__ = [
    "MESSAGES",
    "error_page",
    "form_post_page",
    "logged_out_page",
    "login_page",
    "logout_confirm_page",
    "origin_of",
    "security_headers",
]

MESSAGES: Final[Mapping[Locale, Mapping[str, str]]] = {
    "en": {
        "sign_in_title": "Sign in",
        "sign_in_heading": "Sign in to your account",
        "username": "Username",
        "password": "Password",
        "sign_in": "Sign in",
        "cancel": "Cancel",
        "invalid_credentials": "Invalid username or password.",
        "error_title": "Error",
        "error_heading": "We are sorry...",
        "back": "Please return to the application and try again.",
        "redirecting": "Redirecting, please wait…",
        "continue": "Continue",
        "logout_title": "Logging out",
        "logout_question": "Do you want to log out?",
        "logout": "Logout",
        "logged_out": "You are logged out",
        "dev_notice": "Development server; not connected to the bank.",
        "client_not_found": "Client not found.",
        "missing_client_id": "Missing parameter: client_id",
        "invalid_redirect_uri": "Invalid parameter: redirect_uri",
        "invalid_post_logout_redirect": "Invalid redirect uri",
        "invalid_id_token_hint": "Invalid parameter: id_token_hint",
        "logout_client_required": (
            "Either the parameter 'client_id' or the parameter 'id_token_hint' is required "
            "when 'post_logout_redirect_uri' is used."
        ),
        "login_timeout": "Your login attempt timed out. Please start again from the application.",
        "logout_timeout": "Your logout request timed out. Please log out again.",
    },
    "ka": {
        "sign_in_title": "შესვლა",
        "sign_in_heading": "შედით თქვენს ანგარიშზე",
        "username": "მომხმარებელი",
        "password": "პაროლი",
        "sign_in": "შესვლა",
        "cancel": "გაუქმება",
        "invalid_credentials": "მომხმარებლის სახელი ან პაროლი არასწორია.",
        "error_title": "შეცდომა",
        "error_heading": "ბოდიშს გიხდით...",
        "back": "გთხოვთ, დაბრუნდეთ აპლიკაციაში და სცადოთ თავიდან.",
        "redirecting": "გადამისამართება, გთხოვთ მოიცადოთ…",
        "continue": "გაგრძელება",
        "logout_title": "გასვლა",
        "logout_question": "გსურთ სისტემიდან გასვლა?",
        "logout": "გასვლა",
        "logged_out": "თქვენ გამოხვედით სისტემიდან",
        "dev_notice": "სატესტო სერვერი; ბანკთან არ არის დაკავშირებული.",
        "client_not_found": "კლიენტი ვერ მოიძებნა.",
        "missing_client_id": "აკლია პარამეტრი: client_id",
        "invalid_redirect_uri": "არასწორი პარამეტრი: redirect_uri",
        "invalid_post_logout_redirect": "არასწორი გადამისამართების მისამართი",
        "invalid_id_token_hint": "არასწორი პარამეტრი: id_token_hint",
        "logout_client_required": (
            "როცა გამოიყენება 'post_logout_redirect_uri', საჭიროა პარამეტრი 'client_id' ან "
            "'id_token_hint'."
        ),
        "login_timeout": "შესვლის მცდელობის დრო ამოიწურა. გთხოვთ, თავიდან დაიწყოთ აპლიკაციიდან.",
        "logout_timeout": "გასვლის მოთხოვნის დრო ამოიწურა. გთხოვთ, კიდევ ერთხელ გამოხვიდეთ.",
    },
}

_STYLE = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
font-family:system-ui,-apple-system,"Segoe UI","Noto Sans Georgian",sans-serif;
background:#f2f4f7;color:#1d2939}
main{width:100%;max-width:380px;background:#fff;border-radius:12px;padding:32px;
box-shadow:0 4px 24px rgba(16,24,40,.08)}
h1{font-size:1.35rem;margin:0 0 4px}
.realm{margin:0 0 24px;color:#667085;font-size:.9rem}
label{display:block;font-size:.9rem;font-weight:600;margin:16px 0 6px}
input[type=text],input[type=password]{width:100%;padding:10px 12px;font-size:1rem;
border:1px solid #d0d5dd;border-radius:8px}
input:focus{outline:2px solid #ff6200;outline-offset:1px}
.buttons{display:flex;gap:12px;margin-top:24px}
button{flex:1;padding:10px 12px;font-size:1rem;border-radius:8px;cursor:pointer;
border:1px solid #d0d5dd;background:#fff;color:#1d2939}
button.primary{background:#ff6200;border-color:#ff6200;color:#fff;font-weight:600}
.alert{margin:0 0 8px;padding:10px 12px;border-radius:8px;background:#fef3f2;
color:#b42318;font-size:.9rem}
.notice{margin:24px 0 0;color:#98a2b3;font-size:.8rem}
"""

#: Characters a CSP source expression may carry; anything else is not put in the header.
_SAFE_ORIGIN = re.compile(r"https?://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, if safe for a CSP header."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return origin if _SAFE_ORIGIN.fullmatch(origin) else None


def security_headers(
    *, nonce: str | None = None, form_targets: Iterable[str] = ()
) -> dict[str, str]:
    """No caching, no referrer, no framing and a CSP that allows only this page's own code."""
    csp = ["default-src 'none'"]
    if nonce is not None:
        csp += [f"style-src 'nonce-{nonce}'", f"script-src 'nonce-{nonce}'"]
    targets = " ".join(dict.fromkeys(form_targets)) or "'none'"
    csp += [f"form-action {targets}"]
    csp += ["frame-ancestors 'none'", "base-uri 'none'"]
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "; ".join(csp),
    }


def _document(locale: Locale, title: str, body: str, nonce: str, script: str = "") -> str:
    script_tag = f'<script nonce="{nonce}">{script}</script>' if script else ""
    return (
        f'<!DOCTYPE html>\n<html lang="{locale}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f'<title>{escape(title)}</title><style nonce="{nonce}">{_STYLE}</style></head>'
        f"<body><main>{body}</main>{script_tag}</body></html>"
    )


def _respond(
    locale: Locale,
    title: str,
    body: str,
    *,
    status: int = 200,
    form_targets: Iterable[str] = (),
    script: str = "",
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(
        _document(locale, title, body, nonce, script),
        status_code=status,
        headers=security_headers(nonce=nonce, form_targets=form_targets),
    )


def login_page(
    *,
    locale: Locale,
    realm: str,
    action_url: str,
    session_code: str,
    redirect_uri: str,
    username: str = "",
    error: str | None = None,
) -> HTMLResponse:
    """The sign-in form; it posts to ``action_url``, which redirects to ``redirect_uri``."""
    text = MESSAGES[locale]
    alert = (
        f'<p class="alert" id="input-error" role="alert">{escape(text[error])}</p>' if error else ""
    )
    body = (
        f'<h1 id="kc-page-title">{escape(text["sign_in_heading"])}</h1>'
        f'<p class="realm">{escape(realm)}</p>{alert}'
        f'<form id="kc-form-login" method="post" action="{escape(action_url)}">'
        f'<input type="hidden" name="session_code" value="{escape(session_code)}">'
        f'<label for="username">{escape(text["username"])}</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        'autocomplete="username" autocapitalize="none" spellcheck="false" autofocus>'
        f'<label for="password">{escape(text["password"])}</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password">'
        '<div class="buttons">'
        f'<button type="submit" class="primary" id="kc-login" name="login" value="login">'
        f"{escape(text['sign_in'])}</button>"
        f'<button type="submit" id="kc-cancel" name="cancel" value="cancel" formnovalidate>'
        f"{escape(text['cancel'])}</button></div></form>"
        f'<p class="notice">{escape(text["dev_notice"])}</p>'
    )
    targets = ["'self'", *filter(None, [origin_of(redirect_uri)])]
    return _respond(locale, text["sign_in_title"], body, form_targets=targets)


def error_page(*, locale: Locale, message: str, status: int = 400) -> HTMLResponse:
    """Keycloak's "We are sorry..." page; ``message`` is a key of :data:`MESSAGES`."""
    text = MESSAGES[locale]
    body = (
        f'<h1 id="kc-page-title">{escape(text["error_heading"])}</h1>'
        f'<p class="alert" id="kc-error-message">{escape(text[message])}</p>'
        f"<p>{escape(text['back'])}</p>"
    )
    return _respond(locale, text["error_title"], body, status=status)


def form_post_page(
    *, locale: Locale, redirect_uri: str, params: Iterable[tuple[str, str]]
) -> HTMLResponse:
    """``response_mode=form_post``: a form that posts ``params`` to ``redirect_uri`` at once."""
    text = MESSAGES[locale]
    fields = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in params
    )
    body = (
        f'<form id="kc-form-post" method="post" action="{escape(redirect_uri)}">{fields}'
        f"<p>{escape(text['redirecting'])}</p>"
        f'<noscript><button type="submit" class="primary">{escape(text["continue"])}</button>'
        "</noscript></form>"
    )
    targets = filter(None, [origin_of(redirect_uri)])
    script = 'document.getElementById("kc-form-post").submit();'
    return _respond(locale, text["redirecting"], body, form_targets=targets, script=script)


def logout_confirm_page(
    *, locale: Locale, action_url: str, session_code: str, redirect_uri: str | None
) -> HTMLResponse:
    """Keycloak's logout confirmation: a button that POSTs the pending logout's id."""
    text = MESSAGES[locale]
    body = (
        f'<h1 id="kc-page-title">{escape(text["logout_title"])}</h1>'
        f'<p id="kc-logout-question">{escape(text["logout_question"])}</p>'
        f'<form id="kc-logout-form" method="post" action="{escape(action_url)}">'
        f'<input type="hidden" name="session_code" value="{escape(session_code)}">'
        '<div class="buttons">'
        '<button type="submit" class="primary" id="kc-logout" name="confirmLogout" '
        f'value="confirm">{escape(text["logout"])}</button></div></form>'
    )
    targets = ["'self'", *filter(None, [origin_of(redirect_uri or "")])]
    return _respond(locale, text["logout_title"], body, form_targets=targets)


def logged_out_page(*, locale: Locale) -> HTMLResponse:
    """Shown after a logout that named no ``post_logout_redirect_uri``."""
    text = MESSAGES[locale]
    body = f'<h1 id="kc-page-title">{escape(text["logged_out"])}</h1>'
    return _respond(locale, text["logged_out"], body)
