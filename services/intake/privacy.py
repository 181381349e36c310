"""Personal data out of public texts: one masking rule for every public page and API.

Used by Open311 (descriptions and status notes it returns) and by the publicity pages
(典型案例 summaries are prefilled with it and checked with it before publishing).
"""
from __future__ import annotations

from markupsafe import Markup, escape

# The rule itself is the platform's (retention uses it too); re-exported for intake's modules.
from services.common.web.privacy import EMAIL, MASK, PERSONAL_NUMBER, mask_personal

__all__ = ["EMAIL", "MASK", "PERSONAL_NUMBER", "mask_personal", "mark_personal"]


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
