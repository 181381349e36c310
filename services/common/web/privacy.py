"""Personal data on staff pages: the citizen's phone and name shown masked until a member of
staff reveals them on purpose (a POST that writes a ``pii.reveal`` audit entry; docs/security.md).

In templates: ``{{ data.phone|mask_phone }}``, ``{{ data.name|mask_name }}``.
"""
from __future__ import annotations


def mask_phone(value) -> str:
    """138****1234: a number of 8 or more characters keeps its first 3 and last 4; a shorter
    one only its last 2."""
    text = str(value or "").strip()
    if len(text) >= 8:
        return text[:3] + "*" * (len(text) - 7) + text[-4:]
    if len(text) > 2:
        return "*" * (len(text) - 2) + text[-2:]
    return "*" * len(text)


def mask_name(value) -> str:
    """张* / 张** / 欧***: the first character (the family name, mostly) and a star for each
    of the others; a one-character name is all star."""
    text = str(value or "").strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def init_app(app) -> None:
    app.add_template_filter(mask_phone)
    app.add_template_filter(mask_name)
