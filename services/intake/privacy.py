"""Personal data out of public texts: one masking rule for every public page and API.

Used by Open311 (descriptions and status notes it returns) and by the publicity pages
(典型案例 summaries are prefilled with it and checked with it before publishing).
"""
from __future__ import annotations

import re

from markupsafe import Markup, escape

# Numbers that identify a person (mobile, landline, ID card) and e-mail addresses: masked in
# every public text (a citizen often writes "请回电138…" into the description).
PERSONAL_NUMBER = re.compile(r"(?<![\dA-Za-z])(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|\d{17}[\dXx])(?![\dA-Za-z])")
# ASCII only: with \w, "邮箱zsf@…" would take the Chinese word before the address with it.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
MASK = "＊＊＊"


def mask_personal(text, name: str | None = None, phone: str | None = None):
    """``text`` without the requester's ``name`` and ``phone``, nor any phone, ID or e-mail.

    A one-character name is left alone (it would mask ordinary words)."""
    if not text:
        return text
    if phone:
        text = text.replace(phone, MASK)
    name = (name or "").strip()
    if len(name) >= 2:
        text = text.replace(name, MASK)
    return EMAIL.sub(MASK, PERSONAL_NUMBER.sub(MASK, text))


def _partial(found: str) -> str:
    """What staff see of a personal value: enough to recognise it, not to use it."""
    if "@" in found:
        user, _, domain = found.partition("@")
        return f"{user[:1]}***@{domain}"
    if any(ch.isdigit() for ch in found):
        digits = found.replace("-", "")
        return digits[:3] + "*" * max(1, len(digits) - 7) + digits[-4:] if len(digits) >= 8 else "*" * len(digits)
    return found[:1] + "*" * (len(found) - 1)


def mark_personal(text, name: str | None = None, phone: str | None = None) -> Markup:
    """``text`` as HTML for a staff page: every span ``mask_personal`` would hide, partly
    hidden and wrapped in <mark>, so a reviewer sees what the masking caught and where."""
    text = text or ""
    spans = []
    name = (name or "").strip()
    literals = [v for v in (phone, name if len(name) >= 2 else None) if v]
    for literal in literals:
        start = text.find(literal)
        while start >= 0:
            spans.append((start, start + len(literal)))
            start = text.find(literal, start + len(literal))
    for pattern in (PERSONAL_NUMBER, EMAIL):
        spans += [m.span() for m in pattern.finditer(text)]
    out, position = [], 0
    for start, end in sorted(spans):
        if start < position:
            continue  # inside a span already marked
        out.append(escape(text[position:start]))
        out.append(Markup('<mark class="pii">%s</mark>') % _partial(text[start:end]))
        position = end
    out.append(escape(text[position:]))
    return Markup("").join(out)
