"""The router's own pages, in English and Georgian: small, first-party, script-free
except for the two relay pages, whose one inline script is allowed by its hash."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlencode

__all__ = [
    "Locale",
    "RELAY_MARKER",
    "csp",
    "error_page",
    "logout_page",
    "onward_page",
    "relay_page",
    "resubmit_page",
    "signed_out_here_page",
    "text",
]

Locale = Literal["en", "ka"]
RELAY_MARKER = "corpauth_relay"

# The fragment relay: read location.hash, wipe it from the address bar and history, and
# POST it same-origin (so the SameSite=Lax cookies come along).
_FRAGMENT_SCRIPT = (
    "(function(){var h=window.location.hash.substring(1);"
    'history.replaceState(null,"",window.location.pathname);'
    'var f=document.getElementById("relay");'
    "new URLSearchParams(h).forEach(function(v,k){"
    'var i=document.createElement("input");i.type="hidden";i.name=k;i.value=v;'
    "f.appendChild(i);});f.submit();})();"
)
# Re-submits a cross-site form_post same-origin, so the browser sends the Lax cookies.
_RESUBMIT_SCRIPT = 'document.getElementById("relay").submit();'

_TEXTS: Mapping[str, Mapping[Locale, str]] = {
    "signing_in": {"en": "Signing in…", "ka": "მიმდინარეობს შესვლა…"},
    "needs_js": {
        "en": "JavaScript is needed to finish signing in.",
        "ka": "შესვლის დასასრულებლად საჭიროა JavaScript.",
    },
    "continue": {"en": "Continue", "ka": "გაგრძელება"},
    "failed": {"en": "Sign-in failed", "ka": "შესვლა ვერ მოხერხდა"},
    "sign_in_again": {"en": "Sign in again", "ka": "თავიდან შესვლა"},
    "error_code": {"en": "Error code", "ka": "შეცდომის კოდი"},
    "bank_answered": {"en": "The bank answered", "ka": "ბანკის პასუხი"},
    "state_missing": {
        "en": "The bank's answer did not say which sign-in it belongs to.",
        "ka": "ბანკის პასუხში არ ჩანს, რომელ შესვლას ეკუთვნის.",
    },
    "state_unknown": {
        "en": "This sign-in was not started here. Please start again.",
        "ka": "ეს შესვლა აქ არ დაწყებულა. გთხოვთ, თავიდან დაიწყოთ.",
    },
    "state_reused": {
        "en": "This sign-in link was already used. Please start again.",
        "ka": "ეს შესვლის ბმული უკვე გამოყენებულია. გთხოვთ, თავიდან დაიწყოთ.",
    },
    "state_expired": {
        "en": "The sign-in took too long. Please start again.",
        "ka": "შესვლას ძალიან დიდი დრო დასჭირდა. გთხოვთ, თავიდან დაიწყოთ.",
    },
    "state_mismatch": {
        "en": "This sign-in was started in another browser. Please start again here.",
        "ka": "ეს შესვლა სხვა ბრაუზერში დაიწყო. გთხოვთ, აქ თავიდან დაიწყოთ.",
    },
    "cancelled": {
        "en": "Sign-in was cancelled at the bank.",
        "ka": "შესვლა ბანკის გვერდზე გაუქმდა.",
    },
    "bank_refused": {
        "en": "The bank could not sign you in.",
        "ka": "ბანკმა ვერ შეძლო თქვენი შესვლა.",
    },
    "mode_mismatch": {
        "en": "The bank's answer arrived in an unexpected way and was not used.",
        "ka": "ბანკის პასუხი მოულოდნელი გზით მოვიდა და არ იქნა გამოყენებული.",
    },
    "unusable": {
        "en": "The bank's answer could not be used to sign you in.",
        "ka": "ბანკის პასუხით შესვლა ვერ მოხერხდა.",
    },
    "not_confirmed": {
        "en": "The bank did not confirm this sign-in, so it was not used.",
        "ka": "ბანკმა ეს შესვლა არ დაადასტურა, ამიტომ ის არ იქნა გამოყენებული.",
    },
    "cannot_confirm": {
        "en": "The bank cannot confirm sign-ins right now. Please try again shortly.",
        "ka": "ბანკი ამჟამად ვერ ადასტურებს შესვლას. გთხოვთ, ცოტა ხანში სცადოთ.",
    },
    "unavailable": {
        "en": "Signing in is temporarily unavailable. Please try again shortly.",
        "ka": "შესვლა დროებით მიუწვდომელია. გთხოვთ, ცოტა ხანში სცადოთ.",
    },
    "bank_unexpected": {
        "en": "The bank's sign-in service did not answer as expected. Please try again later.",
        "ka": "ბანკის ავტორიზაციის სერვისმა მოულოდნელად უპასუხა. გთხოვთ, მოგვიანებით სცადოთ.",
    },
    "failed_generic": {"en": "Signing in failed.", "ka": "შესვლა ვერ მოხერხდა."},
    "misconfigured": {
        "en": "Signing in is not set up correctly here. Please tell the site's operator.",
        "ka": "შესვლა აქ სწორად არ არის გამართული. გთხოვთ, აცნობოთ საიტის ადმინისტრატორს.",
    },
    "sign_out": {"en": "Sign out", "ka": "გასვლა"},
    "sign_out_question": {
        "en": "Sign out of this application?",
        "ka": "გსურთ ამ აპლიკაციიდან გასვლა?",
    },
    "signed_out": {"en": "Signed out", "ka": "თქვენ გახვედით"},
    "signed_out_here": {
        "en": "You are signed out of this application. The bank has no sign-out page of "
        "its own here, so your sign-in at the bank may still be active: close the browser "
        "to end it.",
        "ka": "თქვენ გახვედით ამ აპლიკაციიდან. ბანკს აქ საკუთარი გასვლის გვერდი არ აქვს, "
        "ამიტომ ბანკში შესვლა შესაძლოა ჯერ კიდევ აქტიური იყოს: მის დასასრულებლად "
        "დახურეთ ბრაუზერი.",
    },
    "cross_site": {
        "en": "This sign-out request came from another site and was ignored.",
        "ka": "გასვლის ეს მოთხოვნა სხვა საიტიდან მოვიდა და არ შესრულდა.",
    },
}


def text(key: str, locale: str) -> str:
    """The text ``key`` in ``locale`` (English when the locale is unknown)."""
    texts = _TEXTS[key]
    return texts["ka"] if locale == "ka" else texts["en"]


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def csp(script: str | None = None) -> str:
    """The pages' Content-Security-Policy: nothing loads, only ``script`` may run."""
    script_src = _script_hash(script) if script else "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;"
    "padding:0 1rem;color:#1f2933}h1{font-size:1.4rem}button{font-size:1rem;"
    "padding:.5rem 1.2rem}code{background:#f1f3f5;padding:0 .3rem}</style>"
)


def _page(locale: str, title: str, body: str) -> str:
    lang = "ka" if locale == "ka" else "en"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>{_STYLE}</head><body>{body}</body></html>"
    )


def relay_page(action: str) -> tuple[str, str]:
    """The fragment relay page and its CSP."""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><title>Signing in…</title></head>'
        "<body><noscript>JavaScript is needed to finish signing in.</noscript>"
        f'<form id="relay" method="post" action="{html.escape(action, quote=True)}">'
        f'<input type="hidden" name="{RELAY_MARKER}" value="fragment"></form>'
        f"<script>{_FRAGMENT_SCRIPT}</script></body></html>"
    )
    return page, csp(_FRAGMENT_SCRIPT)


def resubmit_page(action: str, fields: Mapping[str, str]) -> tuple[str, str]:
    """Re-posts a cross-site form_post same-origin; the page and its CSP."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name, quote=True)}" '
        f'value="{html.escape(value, quote=True)}">'
        for name, value in fields.items()
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><title>Signing in…</title></head>'
        f'<body><form id="relay" method="post" action="{html.escape(action, quote=True)}">'
        f"{inputs}"
        f'<input type="hidden" name="{RELAY_MARKER}" value="form_post">'
        "<noscript><button>Continue</button></noscript></form>"
        f"<script>{_RESUBMIT_SCRIPT}</script></body></html>"
    )
    return page, csp(_RESUBMIT_SCRIPT)


def login_link(login_url: str, *, locale: str, next_url: str | None) -> str:
    """``/login`` again, keeping the language and where the customer was going."""
    params = {"lang": locale} if locale != "en" else {}
    if next_url:
        params["next"] = next_url
    return login_url + ("?" + urlencode(params) if params else "")


def error_page(
    *,
    locale: str,
    message_key: str,
    code: str,
    again_url: str,
    provider_error: str | None = None,
) -> str:
    """A refused sign-in: what happened, the stable code, and a way to start again."""
    provider = (
        f"<p>{html.escape(text('bank_answered', locale))}: "
        f'<code id="provider-error">{html.escape(provider_error)}</code></p>'
        if provider_error
        else ""
    )
    body = (
        f"<h1>{html.escape(text('failed', locale))}</h1>"
        f'<p id="message">{html.escape(text(message_key, locale))}</p>{provider}'
        f"<p>{html.escape(text('error_code', locale))}: "
        f'<code id="code">{html.escape(code)}</code></p>'
        f'<p><a id="again" href="{html.escape(again_url, quote=True)}">'
        f"{html.escape(text('sign_in_again', locale))}</a></p>"
    )
    return _page(locale, text("failed", locale), body)


def logout_page(*, locale: str, action: str) -> str:
    """``GET /logout``: a button, so that only a same-site POST signs anyone out."""
    body = (
        f"<h1>{html.escape(text('sign_out', locale))}</h1>"
        f"<p>{html.escape(text('sign_out_question', locale))}</p>"
        f'<form method="post" action="{html.escape(action, quote=True)}">'
        f'<button id="sign-out" type="submit">{html.escape(text("sign_out", locale))}</button>'
        "</form>"
    )
    return _page(locale, text("sign_out", locale), body)


def signed_out_here_page(*, locale: str, continue_url: str) -> str:
    """Signed out locally, and the bank has no end-session endpoint: say so."""
    body = (
        f"<h1>{html.escape(text('signed_out', locale))}</h1>"
        f'<p id="message">{html.escape(text("signed_out_here", locale))}</p>'
        f'<p><a id="continue" href="{html.escape(continue_url, quote=True)}">'
        f"{html.escape(text('continue', locale))}</a></p>"
    )
    return _page(locale, text("signed_out", locale), body)


def onward_page(*, locale: str, url: str) -> str:
    """Go on to ``url`` as a new navigation (meta refresh and a link).

    After the relay page's form POST, a redirect chain that leaves for the bank would be
    stopped by the relay page's ``form-action 'self'``; a fresh navigation is not.
    """
    target = html.escape(url, quote=True)
    body = (
        f"<p>{html.escape(text('signing_in', locale))}</p>"
        f'<p><a id="continue" href="{target}">{html.escape(text("continue", locale))}</a></p>'
    )
    page = _page(locale, text("signing_in", locale), body)
    return page.replace("<head>", f'<head><meta http-equiv="refresh" content="0;url={target}">', 1)


def cross_site_page(*, locale: str) -> str:
    """A sign-out POST from another site, refused."""
    body = (
        f"<h1>{html.escape(text('sign_out', locale))}</h1>"
        f'<p id="message">{html.escape(text("cross_site", locale))}</p>'
        '<p>Error code: <code id="code">cross_site_request</code></p>'
    )
    return _page(locale, text("sign_out", locale), body)
