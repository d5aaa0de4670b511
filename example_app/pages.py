"""The example app's pages: a small layout, English and Georgian texts, number formatting.

Plain HTML and a little inline CSS, no front-end build. Every value that comes from the
bank or the customer's profile is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal
from urllib.parse import urlencode

import httpx

Lang = Literal["en", "ka"]

TEXT: Final[Mapping[Lang, Mapping[str, str]]] = {
    "en": {
        "product": "Treasury",
        "company": "Kartli Logistics",
        "home": "Home",
        "welcome": "Company accounts at a glance",
        "intro": "You are not signed in. Sign in with your Business Online account to see "
        "the company's balances.",
        "sign_in": "Sign in with the bank",
        "signed_in_as": "Signed in as",
        "session_ends": "Session ends at",
        "accounts": "Company accounts",
        "accounts_link": "Show the company's accounts",
        "accounts_note": "As the company: fetched from the bank's API with the company's own "
        "token (client_credentials), whoever is signed in.",
        "my_accounts": "My accounts",
        "my_accounts_link": "Show the accounts I may see",
        "my_accounts_note": "As you: fetched with your own sign-in token (user_api_client), "
        "so the bank shows what you may see.",
        "sign_out": "Sign out",
        "signed_out": "You have signed out",
        "signed_out_note": "Your session here and at the bank has ended.",
        "sign_in_again": "Sign in again",
        "iban": "IBAN",
        "holder": "Holder",
        "currency": "Currency",
        "balance": "Balance",
        "bank_error": "The bank answered HTTP {status}. Please try again later.",
        "footer": "Example app of fastapi-corpauth. Development sign-in: demo / demo.",
        "language": "Language",
    },
    "ka": {
        "product": "ხაზინა",
        "company": "ქართლი ლოჯისტიკსი",
        "home": "მთავარი",
        "welcome": "კომპანიის ანგარიშები ერთ გვერდზე",
        "intro": "თქვენ არ ხართ შესული სისტემაში. კომპანიის ნაშთების სანახავად შედით "
        "Business Online-ის ანგარიშით.",
        "sign_in": "ბანკით შესვლა",
        "signed_in_as": "მომხმარებელი",
        "session_ends": "სესიის დასასრული",
        "accounts": "კომპანიის ანგარიშები",
        "accounts_link": "კომპანიის ანგარიშების ნახვა",
        "accounts_note": "კომპანიის სახელით: მონაცემები მიღებულია ბანკის API-დან კომპანიის "
        "საკუთარი ტოკენით (client_credentials), მიუხედავად იმისა, ვინ არის შესული.",
        "my_accounts": "ჩემი ანგარიშები",
        "my_accounts_link": "ჩემთვის ხელმისაწვდომი ანგარიშები",
        "my_accounts_note": "თქვენი სახელით: მონაცემები მიღებულია თქვენი შესვლის ტოკენით "
        "(user_api_client), ამიტომ ბანკი აჩვენებს მხოლოდ იმას, რისი ნახვაც შეგიძლიათ.",
        "sign_out": "გასვლა",
        "signed_out": "თქვენ გამოხვედით სისტემიდან",
        "signed_out_note": "თქვენი სესია აქაც და ბანკშიც დასრულდა.",
        "sign_in_again": "ხელახლა შესვლა",
        "iban": "IBAN",
        "holder": "მფლობელი",
        "currency": "ვალუტა",
        "balance": "ნაშთი",
        "bank_error": "ბანკმა დააბრუნა HTTP {status}. გთხოვთ, სცადოთ მოგვიანებით.",
        "footer": "fastapi-corpauth-ის სანიმუშო აპლიკაცია. სატესტო შესვლა: demo / demo.",
        "language": "ენა",
    },
}

STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI","Noto Sans Georgian",
"DejaVu Sans",sans-serif;background:#f2f4f7;color:#1d2939;line-height:1.5}
a{color:#c44a00}
header{background:#fff;border-bottom:1px solid #eaecf0}
.bar{max-width:960px;margin:0 auto;padding:12px 20px;display:flex;align-items:center;
gap:16px;flex-wrap:wrap}
.brand{font-weight:700;font-size:1.1rem;color:#1d2939;text-decoration:none;margin-right:auto}
.brand span{color:#ff6200}
.lang a{padding:2px 6px;border-radius:6px;text-decoration:none;color:#475467;font-size:.9rem}
.lang a[aria-current]{background:#fff3eb;color:#c44a00;font-weight:600}
.who{font-size:.9rem;color:#475467;display:flex;align-items:center;gap:12px}
.who form{margin:0}
main{max-width:960px;margin:0 auto;padding:32px 20px}
h1{font-size:1.6rem;margin:0 0 8px}
.muted{color:#667085}
.card{background:#fff;border-radius:12px;padding:24px;margin:24px 0;
box-shadow:0 4px 24px rgba(16,24,40,.06)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
.facts dt{color:#667085}.facts dd{margin:0;font-weight:600}
.actions{display:flex;gap:12px;flex-wrap:wrap;margin-top:20px}
.button,button{display:inline-block;padding:10px 16px;font-size:1rem;border-radius:8px;
cursor:pointer;border:1px solid #d0d5dd;background:#fff;color:#1d2939;text-decoration:none;
font-family:inherit}
.primary{background:#ff6200;border-color:#ff6200;color:#fff;font-weight:600}
.who button{padding:6px 12px;font-size:.9rem}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:.95rem}
th,td{padding:10px 12px;border-bottom:1px solid #eaecf0;text-align:left;white-space:nowrap}
th{color:#667085;font-weight:600;font-size:.85rem}
td.amount,th.amount{text-align:right;font-variant-numeric:tabular-nums}
td.iban{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9rem}
footer{max-width:960px;margin:0 auto;padding:0 20px 32px;color:#98a2b3;font-size:.8rem}
@media (max-width:600px){h1{font-size:1.3rem}.card{padding:16px}
.who{width:100%;justify-content:space-between}
.narrow-hide{display:none}th,td{padding:10px 6px}}
"""


def language(value: str | None) -> Lang:
    """The page language from ``?lang=``: Georgian when asked for, English otherwise."""
    return "ka" if value == "ka" else "en"


def link(path: str, lang: Lang, **query: str) -> str:
    """``path`` with the page language kept in the query string."""
    params = {**query, **({"lang": "ka"} if lang == "ka" else {})}
    return path + (f"?{urlencode(params)}" if params else "")


def sign_in_url(lang: Lang) -> str:
    """The router's ``/login``, in ``lang``, landing back on the home page in ``lang``."""
    params = {"lang": lang, "next": link("/", lang)} if lang == "ka" else {"next": "/"}
    return "/auth/login?" + urlencode(params)


def sign_out_action(lang: Lang) -> str:
    return "/auth/logout?" + urlencode({"next": link("/signed-out", lang)})


def format_amount(value: Any, lang: Lang) -> str:
    """``125400.50`` as ``125,400.50`` (English) or ``125 400,50`` (Georgian)."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = f"{amount:,.2f}"
    if lang == "ka":
        text = text.replace(",", "\u00a0").replace(".", ",")
    return text


def format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M UTC")


def sign_in_buttons(lang: Lang) -> str:
    """Both sign-in buttons, the page's own language first."""
    english = (
        f'<a id="sign-in" class="button{" primary" if lang == "en" else ""}" '
        f'href="{html.escape(sign_in_url("en"))}">{TEXT["en"]["sign_in"]}</a>'
    )
    georgian = (
        f'<a id="sign-in-ka" class="button{" primary" if lang == "ka" else ""}" lang="ka" '
        f'href="{html.escape(sign_in_url("ka"))}">{TEXT["ka"]["sign_in"]}</a>'
    )
    first, second = (georgian, english) if lang == "ka" else (english, georgian)
    return f'<div class="actions">{first}{second}</div>'


def layout(
    lang: Lang, title: str, body: str, *, path: str = "/", user_name: str | None = None
) -> str:
    """A whole page: header with the product, language switch and the signed-in user."""
    text = TEXT[lang]
    languages: tuple[tuple[Lang, str], ...] = (("en", "EN"), ("ka", "ქარ"))
    switch = "".join(
        f'<a href="{html.escape(link(path, code))}" hreflang="{code}"'
        f"{' aria-current=page' if code == lang else ''}>{label}</a>"
        for code, label in languages
    )
    who = ""
    if user_name is not None:
        who = (
            f'<div class="who"><span>{html.escape(user_name)}</span>'
            f'<form method="post" action="{html.escape(sign_out_action(lang))}">'
            f'<button id="sign-out" type="submit">{text["sign_out"]}</button></form></div>'
        )
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)} · {text['company']} {text['product']}</title>"
        f"<style>{STYLE}</style></head><body>"
        f'<header><div class="bar"><a class="brand" href="{html.escape(link("/", lang))}">'
        f"{text['company']} <span>{text['product']}</span></a>"
        f'<nav class="lang" aria-label="{text["language"]}">{switch}</nav>{who}</div></header>'
        f"<main><h1>{html.escape(title)}</h1>{body}</main>"
        f"<footer>{text['footer']}</footer></body></html>"
    )


def account_rows(accounts: list[dict[str, Any]], lang: Lang) -> str:
    rows = []
    for account in accounts:
        currency = html.escape(str(account.get("currency", "")))
        rows.append(
            "<tr>"
            f'<td class="iban">{html.escape(str(account.get("iban", "")))}</td>'
            f'<td class="narrow-hide">{html.escape(str(account.get("holder", "")))}</td>'
            f'<td class="narrow-hide">{currency}</td>'
            f'<td class="amount">{html.escape(format_amount(account.get("balance"), lang))}'
            f" {currency}</td>"
            "</tr>"
        )
    return "".join(rows)


def accounts_page(
    lang: Lang,
    *,
    kind: Literal["accounts", "my_accounts"],
    answer: httpx.Response,
    user_name: str,
) -> str:
    """The page of the company's accounts (``accounts``) or the customer's own
    (``my_accounts``) from the bank's ``answer``: the table, or the bank's status when it
    did not answer 200."""
    text = TEXT[lang]
    path = "/" + kind.replace("_", "-")
    if answer.status_code != 200:
        message = text["bank_error"].format(status=answer.status_code)
        body = f'<section class="card"><p id="bank-error">{message}</p></section>'
        return layout(lang, text[kind], body, path=path, user_name=user_name)
    body = (
        f'<p class="muted">{text[kind + "_note"]}</p>'
        f'<section class="card table-wrap"><table id="{path[1:]}-table"><thead><tr>'
        f'<th>{text["iban"]}</th><th class="narrow-hide">{text["holder"]}</th>'
        f'<th class="narrow-hide">{text["currency"]}</th>'
        f'<th class="amount">{text["balance"]}</th></tr></thead>'
        f"<tbody>{account_rows(answer.json()['accounts'], lang)}</tbody></table></section>"
    )
    return layout(lang, text[kind], body, path=path, user_name=user_name)
