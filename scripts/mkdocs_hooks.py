"""MkDocs hooks: the settings reference is generated from ``CorpAuthSettings`` at build time.

``docs/settings.md`` holds the marker below; every build replaces it with a table of every
field (variable, type, default, description), so the page cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from fastapi_corpauth import CorpAuthSettings

MARKER = "<!-- settings-reference -->"

#: Section headings, each placed before the field that starts it (in declaration order);
#: a field added anywhere lands in the section of the field before it.
SECTIONS = {
    "client_id": "The bank",
    "connect_timeout": "Timeouts",
    "token_leeway": "The company's token: cache and retries",
    "redirect_uri": "Browser sign-in",
    "session_secret": "Sessions and the cookie",
    "redis_url": "Several workers: Redis",
}


def describe_type(annotation: Any) -> str:
    """The value a variable takes, in words."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        return describe_type(args[0]) + "s, comma-separated"
    names = {str: "text", int: "integer", float: "number", bool: "`true` or `false`"}
    if annotation is SecretStr:
        return "secret"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def describe_bounds(field: FieldInfo) -> str:
    bounds = []
    for item in field.metadata:
        for attribute, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if isinstance(item, getattr(annotated_types, attribute.capitalize())):
                bounds.append(f"{symbol} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            bounds.append("not empty")
        if isinstance(item, annotated_types.MaxLen):
            bounds.append(f"at most {item.max_length} characters")
    return ", ".join(bounds)


def describe_default(name: str, field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "auto" if name == "cookie_secure" else "unset"
    if isinstance(default, tuple) and not default:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def settings_reference() -> str:
    """Markdown tables of every ``CORPAUTH_*`` variable, grouped in sections."""
    lines: list[str] = []
    for name, field in CorpAuthSettings.model_fields.items():
        if name in SECTIONS:
            lines += ["", f"### {SECTIONS[name]}", ""]
            lines += ["| Variable | Value | Default | Meaning |", "|---|---|---|---|"]
        value = describe_type(field.annotation)
        if name == "cookie_secure":  # None is spelt "auto" (or left unset)
            value = "`true`, `false` or `auto`"
        if name == "issuer" or name.endswith(("_url", "_uri")) and value.startswith("text"):
            value = value.replace("text", "URL", 1)
        bounds = describe_bounds(field)
        if bounds:
            value += f" ({bounds})"
        description = (field.description or "").replace("|", "\\|")
        variable = f"`CORPAUTH_{name.upper()}`"
        lines.append(f"| {variable} | {value} | {describe_default(name, field)} | {description} |")
    return "\n".join(lines).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_reference())
    return markdown
